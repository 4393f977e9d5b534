"""One actor per WhatsApp instance: a thin executor of the core's per-instance step.

The actor loads its snapshot when it starts (or starts from the row the supervisor's boot read),
then takes one input at a time (its mailbox, the webhook inbox, the ticks of the node's health
scheduler), asks `core.instance.step` what follows, and carries out the effects in order: it
writes, publishes, calls Evolution, and feeds each answer back as the next input.  Expected
failures (Evolution down, a malformed event) are answered or recorded; only a bug escapes `run`,
and the supervisor restarts the actor from the database.  So does a database that went away (a
transient error): the supervisor waits for it without counting a crash, and the actor starts
again from what was committed, the unapplied inbox rows in order.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import trio

from ..core.auto_reply import Recompose, SendReply, SettleReply
from ..core.instance import (
    Boot,
    CallReconnect,
    EnsureCreated,
    Feed,
    Forgotten,
    Input,
    Observed,
    OrganizationChanged,
    Persist,
    Publish,
    ReplyComposed,
    ResumeSession,
    RunCheck,
    SettingsChanged,
    SyncWebhook,
    Tick,
    send_refusal,
    step,
)
from ..core.state import CallConnect, CallLogout, ConnectRequested, LogoutRequested
from ..core.views import InstanceSnapshot
from ..evolution.errors import EvolutionError
from ..observability.journal import HealthCheck
from ..observability.logs import bind_correlation
from ..store import auto_replies, inbox, instances
from ..store import messages as messages_store
from ..store.faults import is_transient
from ..store.instances import InstanceRecord
from ..store.messages import Applied
from . import auto_reply, evolution_side, messaging
from .deps import ActorDeps
from .inbox_drain import InboxDrain
from .mailbox import DatabaseUnavailable, Letter, Mailbox, reply
from .messages import (
    Barrier,
    ChangeSettings,
    Connect,
    Crash,
    DeleteInstance,
    DrainInbox,
    HealthTick,
    InjectedCrash,
    Logout,
    NotConnected,
    ReplyReady,
    ResumeSend,
    SendText,
    SetOrganization,
)

log = logging.getLogger(__name__)


class Started(Protocol):
    """What `run` needs of its task_status (trio's TaskStatus, or the supervisor's marker)."""

    def started(self) -> None: ...


class InstanceGone(Exception):
    """The instance's row no longer exists; the actor stops for good."""


@dataclass(frozen=True, slots=True)
class Preload:
    """What the supervisor's boot read for an actor in bulk: its row, and whether it has
    stored work (pending inbox rows, replies not settled) it must look up as it starts."""

    record: InstanceRecord
    pending_inbox: bool = True
    open_replies: bool = True


class InstanceActor:
    """One instance's actor.  Idle, it is this object, its snapshot and one task waiting on
    its mailbox: the health timer is the node's (the supervisor's scheduler), the inbox drain
    and the auto-reply composer are made when first needed."""

    __slots__ = (
        "_composer",
        "_composer_wanted",
        "_drain",
        "_preload",
        "_publish",
        "_snapshot",
        "deps",
        "mailbox",
        "name",
    )

    def __init__(
        self,
        name: str,
        deps: ActorDeps,
        mailbox: Mailbox,
        publish: Callable[[InstanceSnapshot], None],
        preload: Preload | None = None,
    ) -> None:
        self.name = name
        self.deps = deps
        self.mailbox = mailbox
        self._publish = publish  # the snapshot everybody else reads; only this actor writes it
        self._snapshot: InstanceSnapshot | None = None
        self._preload = preload
        self._drain: InboxDrain | None = None
        # The auto-reply composer runs only for an actor with replies to work on: from the
        # start when some are open, else from the first decision (`wake_composer`).
        self._composer: auto_reply.Composer | None = None
        self._composer_wanted = False

    @property
    def _inbox(self) -> InboxDrain:
        if self._drain is None:
            self._drain = InboxDrain(self)
        return self._drain

    @property
    def snapshot(self) -> InstanceSnapshot:
        assert self._snapshot is not None, "the actor has not loaded its state yet"
        return self._snapshot

    def _set_snapshot(self, snapshot: InstanceSnapshot) -> None:
        self._snapshot = snapshot
        self._publish(snapshot)

    async def run(self, *, task_status: Started) -> None:
        preload, self._preload = self._preload, None
        if preload is None:
            record = await instances.find_by_name(self.deps.pool, self.name)
            if record is None:
                raise InstanceGone(self.name)
            preload = Preload(record)  # not known: look for stored work
        self._set_snapshot(preload.record.snapshot())
        task_status.started()
        # Picks up the replies not settled before a restart (after the inbox drain below: its
        # letters wait in the mailbox until then).
        self._composer_wanted = preload.open_replies
        if preload.pending_inbox:
            # Stored events first: they need only the database, and the boot's look at
            # Evolution (which may be down, and retried) must not hold them back.
            await self._inbox.drain()
        del preload
        await self.feed(Boot())
        # Without a composer the actor is this one task (no nursery to hold); once one is
        # wanted, the loop goes on in a nursery where the composer runs beside it.
        if await self._serve():
            return
        async with trio.open_nursery() as tasks:
            self._composer = auto_reply.Composer(
                self.deps, self.deps.auto_reply, self.name, self.mailbox, lambda: self.snapshot
            )
            tasks.start_soon(self._composer.run)
            await self._serve()
            tasks.cancel_scope.cancel()

    async def _serve(self) -> bool:
        """Take letters until the instance is deleted (True) or, while no composer runs, one
        is wanted (False)."""
        while not self.snapshot.deleted:  # a new row under this name gets a new actor
            if self._composer_wanted and self._composer is None:
                return False
            behind = self._drain is not None and self._drain.behind
            if behind:
                # A backlog left by the last turn: a letter already queued goes first, one
                # between turns, and an empty mailbox does not hold the backlog up.
                try:
                    await self._deliver(self.mailbox.get_nowait())
                except trio.WouldBlock:
                    await trio.lowlevel.checkpoint()
            else:
                await self._deliver(await self.mailbox.get())
            # Not once deleted: rows stored since then under this name belong to no row or
            # to the row that replaced it (its own actor), never to this snapshot.
            if not self.snapshot.deleted and (self.mailbox.answer_doorbell() or behind):
                await self._inbox.drain_turn()
        return True

    async def _deliver(self, letter: Letter) -> None:
        with bind_correlation(letter.correlation):
            await self._deliver_bound(letter)

    async def _deliver_bound(self, letter: Letter) -> None:
        try:
            result = await self._handle(letter.message)
        except (EvolutionError, NotConnected) as exc:
            # Expected refusals: the caller learns why, the actor lives on.
            reply(letter, False, exc)
        except Exception as exc:
            if is_transient(exc):
                reply(letter, False, DatabaseUnavailable("The database is not reachable now."))
            else:
                reply(letter, False, exc)
            raise
        else:
            reply(letter, True, result)

    async def _handle(self, message: Any) -> Any:
        match message:
            case Connect():
                await self.feed(ConnectRequested())
                return self.snapshot
            case Logout():
                await self.feed(LogoutRequested())
                return self.snapshot
            case DrainInbox():
                await self._inbox.drain_turn()
                return None
            case HealthTick():
                await self.feed(Tick())
                return None
            case SetOrganization(organization_id=org):
                await self.feed(OrganizationChanged(org))
                return self.snapshot
            case ChangeSettings(auto_reply=flag, auto_reply_prompt=prompt, limits=limits):
                await self.feed(SettingsChanged(flag, prompt, limits))
                return self.snapshot
            case DeleteInstance(purge=purge):
                await self._delete(purge)
                return None
            case Barrier():
                return None
            case SendText(to=to, text=text):
                refusal = send_refusal(self.snapshot)
                if refusal is not None:
                    raise NotConnected(refusal)
                return await messaging.send_text(self.deps, self.snapshot, to, text)
            case ReplyReady():
                await self._reply_ready(message)
                return None
            case ResumeSend(reply_id=reply_id):
                reply = await auto_replies.find(self.deps.pool, self.name, reply_id)
                if reply is not None and reply.state == "sending":
                    await auto_reply.resume_sending(
                        self.deps, self.deps.auto_reply, self.snapshot, reply, self._publish_applied
                    )
                return None
            case Crash(reason=reason):
                raise InjectedCrash(reason)
        raise TypeError(f"unknown message {message!r}")

    # ---- the step and its effects ----------------------------------------------------------

    async def feed(self, item: Input, *, inbox_row: int | None = None) -> None:
        """Take one input: step, write (with the inbox row that carried it), publish, then
        carry out the other effects in order, feeding each answer back."""
        deps = self.deps
        new, effects = step(self.snapshot, item, deps.now(), deps.health_policy, random.random())
        await self._commit(new, save=Persist() in effects, inbox_row=inbox_row)
        self._set_snapshot(new)
        for effect in effects:
            match effect:
                case Persist():
                    pass  # done above, before anything was published
                case Publish(audience=audience, type=frame_type, data=data):
                    data = deps.frame(data, new.instance_name)
                    if audience == "user":
                        deps.hub.publish_user(new.user_id, frame_type, data)
                    else:
                        deps.hub.publish_org(new.organization_id, frame_type, data)
                case EnsureCreated():
                    await self.feed(await evolution_side.create_or_adopt(deps, self.name))
                case Feed(input=next_input):
                    await self.feed(next_input)
                case CallConnect():
                    await self.feed(await evolution_side.connect(deps, self.name))
                case CallLogout():
                    await evolution_side.logout(deps, self.name)
                case SyncWebhook():
                    if not await evolution_side.sync_webhook(deps, self.name):
                        await self.feed(Forgotten())
                case RunCheck():
                    observed = await evolution_side.observe(deps, self.name, effect)
                    await self.feed(observed)
                    self._record_check(observed)
                case ResumeSession():
                    await self.feed(await evolution_side.resume(deps, self.name, effect))
                case CallReconnect():
                    outcome = await evolution_side.reconnect(deps, self.name, effect)
                    deps.metrics.reconnect(outcome.result)
                    await self.feed(outcome)
                case SendReply():
                    await auto_reply.send(deps, deps.auto_reply, new, effect, self._publish_applied)
                case SettleReply():
                    await auto_reply.settle(deps, deps.auto_reply, self.name, effect)
                case Recompose():
                    deps.auto_reply.stats.count("recomposed")
                    self.wake_composer()

    def _record_check(self, observed: Observed) -> None:
        """Metrics and the instance's recent health history (GET /admin/instances/<name>)."""
        if observed.unreachable is not None:
            result = "unreachable"
        elif observed.missing:
            result = "missing"
        else:
            result = "open" if observed.connection_state == "open" else "not_open"
        health = self.snapshot.health
        check = HealthCheck(
            self.deps.now(),
            observed.purpose,
            result,
            observed.connection_state,
            health.status,
            health.consecutive_failures,
            "census" if observed.census else "evolution",
        )
        self.deps.metrics.health_check(self.name, check)

    # ---- auto-reply ---------------------------------------------------------------------------

    async def _reply_ready(self, ready: ReplyReady) -> None:
        """A composed reply (or the responder's failure): the step says send, settle or
        compose again (more messages were folded in meanwhile)."""
        reply = await auto_replies.find(self.deps.pool, self.name, ready.reply_id)
        if reply is None or reply.state != "decided":
            return  # settled meanwhile
        await self.feed(
            ReplyComposed(
                reply.id, reply.chat_jid, ready.text, ready.error, ready.answers, reply.answers
            )
        )

    def _publish_applied(self, snapshot: InstanceSnapshot, applied: Applied) -> None:
        messaging.publish(self.deps, snapshot, applied)

    async def decide_replies(self, conn: Any, applied: Applied) -> bool:
        """Auto-reply decisions for what a batch stored, in its transaction (InboxDrain)."""
        return await auto_reply.decide_in_transaction(self.deps, conn, self.snapshot, applied)

    def wake_composer(self) -> None:
        """After a commit that recorded decisions, so that the composer sees the rows (one
        started now, after the letter in hand, looks at once)."""
        if self._composer is None:
            self._composer_wanted = True
        else:
            self._composer.wake()

    async def _commit(self, new: InstanceSnapshot, *, save: bool, inbox_row: int | None) -> None:
        if inbox_row is None:
            if save:
                await instances.save_snapshot(self.deps.pool, new)
            return
        # The row is marked applied in the same transaction as the state it produced, so a
        # crash in between can neither lose the event nor apply it twice.
        async with self.deps.pool.acquire() as conn:
            async with conn.transaction():
                if save:
                    await instances.save_snapshot(conn, new)
                await inbox.mark_done(conn, inbox_row, "applied")

    async def _delete(self, purge: bool) -> None:
        # Events accepted before the delete are this instance's: applied first, so a plain
        # delete keeps every message that arrived.
        await self._inbox.drain()
        if self.snapshot.in_evolution:
            await evolution_side.delete(self.deps, self.name)
        async with self.deps.pool.acquire() as conn:
            async with conn.transaction():
                await instances.delete_instance(conn, self.name)
                await inbox.retire(conn, self.name)
                await auto_replies.retire(conn, self.name, purge=purge)
                if purge:
                    await messages_store.purge(conn, self.name)
        self.deps.metrics.journal.forget(self.name)
        self._set_snapshot(replace(self.snapshot, deleted=True))
