"""One actor per WhatsApp instance.

The actor owns its instance's state: it loads it from the database when it starts, applies
state-machine events one at a time (from its mailbox and from the webhook inbox), writes the
state on every transition, publishes an immutable snapshot, and executes the effects the pure
core asks for.  Expected failures (Evolution down, a malformed event) are answered or recorded;
only a bug escapes `run`, and the supervisor restarts the actor from the database.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..core.health import Decision, HealthPolicy, HealthState, Reconnected
from ..core.health import on_event as on_health_event
from ..core.health_sync import health_event_for
from ..core.payloads import MESSAGE_EVENTS, parse_batch
from ..core.state import (
    CallConnect,
    CallLogout,
    ConnectionOpened,
    ConnectRequested,
    Effect,
    Event,
    LogoutRequested,
    Notify,
    QrUpdated,
    ReportedClosed,
    ReportedConnecting,
    ReportedOpen,
    transition,
)
from ..core.views import InstanceSnapshot, qrcode_frame, status_frame
from ..core.webhook import WebhookError, state_event
from ..evolution.client import WEBHOOK_EVENTS, EvolutionClient
from ..evolution.errors import EvolutionError, EvolutionForbidden, EvolutionNotFound
from ..evolution.types import ConnectResult, WebhookConfig
from ..store import inbox, instances
from ..store import messages as messages_store
from .health_monitor import HealthMonitor
from .hub import Hub
from .mailbox import Letter, reply
from .messages import (
    Barrier,
    Connect,
    Crash,
    DeleteInstance,
    DrainInbox,
    HealthTick,
    InjectedCrash,
    Logout,
    NotConnected,
    Reconcile,
    SendText,
)
from .messaging import Messaging

if TYPE_CHECKING:
    from .supervisor import ActorHandle

log = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "X-Auzap-Webhook-Secret"


class Started(Protocol):
    """What `run` needs of its task_status (trio's TaskStatus, or the supervisor's marker)."""

    def started(self) -> None: ...


class InstanceGone(Exception):
    """The instance's row no longer exists; the actor stops for good."""


@dataclass(slots=True)
class ActorDeps:
    """What every instance actor shares."""

    pool: Any
    evolution: EvolutionClient
    hub: Hub
    webhook_secret: str
    webhook_base_url: str = ""  # set by the launcher once the HTTP port is bound
    now: Callable[[], float] = trio.current_time  # replaced by wall-clock time in serve
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    # Node-wide bound on concurrent connect/restart calls (boot resumes, reconnects, users).
    connect_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(8))

    def webhook_config(self) -> WebhookConfig:
        return WebhookConfig(
            url=f"{self.webhook_base_url}/api/webhook/whatsapp",
            events=WEBHOOK_EVENTS,
            headers={WEBHOOK_SECRET_HEADER: self.webhook_secret},
        )


class InstanceActor:
    def __init__(self, deps: ActorDeps, handle: ActorHandle) -> None:
        self.deps = deps
        self.handle = handle
        self.name = handle.name
        self.created_in_evolution = False
        self._inbox_cursor = 0
        self.health = HealthMonitor(self)
        self.messaging = Messaging(self)

    @property
    def snapshot(self) -> InstanceSnapshot:
        assert self.handle.snapshot is not None
        return self.handle.snapshot

    async def run(self, *, task_status: Started) -> None:
        record = await instances.find_by_name(self.deps.pool, self.name)
        if record is None:
            raise InstanceGone(self.name)
        self.created_in_evolution = record.evolution_instance_id is not None
        self.handle.snapshot = record.snapshot()
        task_status.started()
        async with trio.open_nursery() as timers:
            timers.start_soon(self.health.timer)
            await self.health.boot()
            await self._drain_inbox()
            mailbox = self.handle.mailbox
            while True:
                letter = await mailbox.receive.receive()
                await self._deliver(letter)
                if self.handle.deleted:
                    break  # a deleted instance's actor ends; a new row gets a new actor
                if self.handle.drain_requested:
                    await self._drain_inbox()
            timers.cancel_scope.cancel()

    async def _deliver(self, letter: Letter) -> None:
        try:
            result = await self._handle(letter.message)
        except (EvolutionError, NotConnected) as exc:
            # Expected refusals: the caller learns why, the actor lives on.
            reply(letter, False, exc)
        except Exception as exc:
            reply(letter, False, exc)
            raise
        else:
            reply(letter, True, result)

    async def _handle(self, message: Any) -> Any:
        match message:
            case Connect():
                await self.ensure_created()
                await self.apply(ConnectRequested())
                return self.snapshot
            case Logout():
                await self.apply(LogoutRequested())
                return self.snapshot
            case DrainInbox():
                await self._drain_inbox()
                return None
            case Reconcile():
                await self.reconcile()
                return self.snapshot
            case HealthTick():
                await self.health.check()
                return None
            case DeleteInstance(purge=purge):
                await self._delete(purge)
                return None
            case Barrier():
                return None
            case SendText(to=to, text=text):
                return await self.messaging.send_text(to, text)
            case Crash(reason=reason):
                raise InjectedCrash(reason)
        raise TypeError(f"unknown message {message!r}")

    # ---- applying events -------------------------------------------------------------------

    async def apply(
        self,
        event: Event,
        *,
        inbox_row: int | None = None,
        health_update: tuple[HealthState, tuple[Decision, ...]] | None = None,
    ) -> None:
        """Run one event through the state machine (and what it tells the health policy),
        persist, publish, then execute the effects and the policy's decisions.

        ``health_update`` is the policy's verdict when the health monitor caused the event: it
        replaces what the transition would tell the policy, so that state and health change in
        one snapshot (no reader ever sees "open" next to a failed check)."""
        old = self.snapshot
        now = self.deps.now()
        state, effects = transition(old.state, event, now)
        health: HealthState = old.health
        decisions: tuple[Decision, ...] = ()
        if health_update is not None:
            health, decisions = health_update
        elif (health_event := health_event_for(old.state, state, event)) is not None:
            health, decisions = on_health_event(
                old.health, health_event, now, self.deps.health_policy, random.random()
            )
        new = old
        if state != old.state or health != old.health:
            new = replace(old, state=state, health=health, updated_at=now)
        await self._persist(new, changed=new is not old, inbox_row=inbox_row)
        self._publish(old, new)
        if any(isinstance(d, Reconnected) for d in decisions):
            # "Reconnected" replaces "connected" after an automatic reconnect.
            effects = tuple(
                e for e in effects if not (isinstance(e, Notify) and e.kind == "connected")
            )
        for effect in effects:
            await self._execute(effect)
        for decision in decisions:
            await self.health.decide(decision)

    async def _persist(
        self, new: InstanceSnapshot, *, changed: bool, inbox_row: int | None
    ) -> None:
        if inbox_row is None:
            if changed:
                await instances.save_snapshot(self.deps.pool, new)
            return
        # The row is marked applied in the same transaction as the state it produced, so a
        # crash in between can neither lose the event nor apply it twice.
        async with self.deps.pool.acquire() as conn:
            async with conn.transaction():
                if changed:
                    await instances.save_snapshot(conn, new)
                await inbox.mark_done(conn, inbox_row, "applied")

    def _publish(self, old: InstanceSnapshot, new: InstanceSnapshot) -> None:
        self.handle.snapshot = new
        hub = self.deps.hub
        if (old.state.status, old.state.phone_number) != (new.state.status, new.state.phone_number):
            frame = status_frame(new)
            hub.publish_user(new.user_id, "status", frame)
            hub.publish_org(new.organization_id, "org.status", frame)
        if new.state.qr_code is not None and new.state.qr_code != old.state.qr_code:
            hub.publish_user(new.user_id, "qrcode", qrcode_frame(new))

    def notify(self, note: Notify) -> None:
        self.deps.hub.publish_user(
            self.snapshot.user_id,
            "notification",
            {
                "level": note.level,
                "title": note.title,
                "message": note.message,
                "action": note.action,
            },
        )

    async def _execute(self, effect: Effect) -> None:
        match effect:
            case Notify():
                self.notify(effect)
            case CallConnect():
                async with self.deps.connect_limiter:
                    result = await self.deps.evolution.connect(self.name)
                await self._apply_connect_result(result)
            case CallLogout():
                try:
                    await self.deps.evolution.logout(self.name)
                except EvolutionError as exc:
                    # Already closed on Evolution's side (2.3.6 answers 400): nothing to undo.
                    log.info("logout of %s: %s", self.name, exc)

    async def _apply_connect_result(self, result: ConnectResult) -> None:
        if result.state == "open":
            await self.apply(ConnectionOpened())
        elif result.qr is not None and result.qr.base64:
            await self.apply(QrUpdated(result.qr.base64))
        # Otherwise ({"count": 0}) the QR arrives later on the qrcode.updated webhook.

    # ---- Evolution side --------------------------------------------------------------------

    async def ensure_created(self) -> None:
        if self.created_in_evolution:
            return
        evolution = self.deps.evolution
        config = self.deps.webhook_config()
        try:
            created = await evolution.create_instance(self.name, webhook=config)
            instance_id: str | None = created.instance_id
            token: str | None = created.token
        except EvolutionForbidden:
            # The name exists already (an earlier create whose answer we lost): adopt it and
            # make sure it calls us back with the current secret.
            await evolution.set_webhook(self.name, config)
            found = await evolution.fetch_instances(name=self.name)
            instance_id, token = (found[0].id if found else None), None
        await instances.mark_created_in_evolution(self.deps.pool, self.name, instance_id, token)
        self.created_in_evolution = True

    async def sync_webhook(self) -> None:
        """Make Evolution call back this service's current URL with the current secret (both
        may have changed since the instance was created: a new WEBHOOK_URL, a rotated secret).
        """
        wanted = self.deps.webhook_config()
        try:
            current = await self.deps.evolution.find_webhook(self.name)
            if current is None or (current.url, current.headers, current.enabled) != (
                wanted.url,
                wanted.headers,
                True,
            ):
                await self.deps.evolution.set_webhook(self.name, wanted)
        except EvolutionNotFound:
            self.created_in_evolution = False
        except EvolutionError as exc:
            log.warning("could not check the webhook of %s: %s", self.name, exc)

    async def reconcile(self) -> None:
        try:
            reported = await self.deps.evolution.connection_state(self.name)
        except EvolutionNotFound:
            # Evolution forgot the instance (its storage was reset): create it again on the
            # next connect.
            self.created_in_evolution = False
            await self.apply(ReportedClosed())
            return
        except EvolutionError as exc:
            log.warning("reconcile %s: Evolution unavailable: %s", self.name, exc)
            return
        events: dict[str, Event] = {
            "open": ReportedOpen(),
            "connecting": ReportedConnecting(),
            "close": ReportedClosed(),
        }
        if reported in events:
            await self.apply(events[reported])

    async def _delete(self, purge: bool) -> None:
        # Events accepted before the delete are this instance's: applied first, so a plain
        # delete keeps every message that arrived.
        await self._drain_inbox()
        if self.created_in_evolution:
            try:
                await self.deps.evolution.delete_instance(self.name)
            except EvolutionNotFound:
                pass
        async with self.deps.pool.acquire() as conn:
            async with conn.transaction():
                await instances.delete_instance(conn, self.name)
                await inbox.retire(conn, self.name)
                if purge:
                    await messages_store.purge(conn, self.name)
        self.handle.deleted = True

    # ---- the webhook inbox -----------------------------------------------------------------

    async def _drain_inbox(self) -> None:
        """Apply this instance's stored webhook rows in arrival order."""
        self.handle.drain_requested = False
        pool = self.deps.pool
        while True:
            rows = await inbox.fetch_pending(pool, self.name, self._inbox_cursor)
            if not rows:
                return
            for row in rows:
                self._inbox_cursor = row.id
                await self._apply_row(row)

    async def _apply_row(self, row: inbox.InboxRow) -> None:
        pool = self.deps.pool
        data = row.payload.get("data") if isinstance(row.payload, dict) else None
        try:
            if row.event in MESSAGE_EVENTS:
                batch = parse_batch(row.event, data)
                assert batch is not None
                await self.messaging.apply_batch(batch, inbox_row=row.id)
                return
            event = state_event(row.event, data)
        except WebhookError as exc:
            await inbox.mark_done(pool, row.id, "invalid", exc.message)
            return
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.exception("error %s applying inbox row %s of %s", error_id, row.id, self.name)
            await inbox.record_failure(pool, row.id, f"[{error_id}] {exc!r}")
            return
        if event is None:
            # Stored for the message pipeline (step 2); nothing for the state machine.
            await inbox.mark_done(pool, row.id, "unhandled")
            return
        try:
            await self.apply(event, inbox_row=row.id)
        except EvolutionError as exc:
            await inbox.record_failure(pool, row.id, str(exc))
        except Exception as exc:
            # A bug: keep the row with its error for replay, and never block later events.
            error_id = uuid.uuid4().hex[:12]
            log.exception("error %s applying inbox row %s of %s", error_id, row.id, self.name)
            await inbox.record_failure(pool, row.id, f"[{error_id}] {exc!r}")
