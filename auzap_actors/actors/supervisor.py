"""The supervisor: one child task per instance actor, restarts with backoff under a restart
budget, parks an actor that keeps crashing and revives it after a growing cool-down, waits out
a database outage without counting it as a crash, and never lets one actor's failure reach
another.  What is done when an actor's run fails (wait, restart, park, revive) is
`recovery.py`; this module decides which, and owns the records and the nursery.

Background work runs in the supervisor's own nursery (started by the launcher), never in
quart-trio's `app.nursery`, whose failures would be silent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from ..core.errors import root_cause
from ..core.instance import wants_health_tick
from ..core.supervision import RestartPolicy
from ..core.views import InstanceSnapshot
from ..observability.logs import clear_correlation, current_correlation
from ..observability.metrics import Metrics
from ..store import auto_replies, inbox, instances
from ..store.doorbell import Doorbell
from ..store.faults import is_transient
from .child import ACCEPTING, ActorStatus, Child, StartMarker
from .deps import ActorDeps
from .health_timer import HealthScheduler, TickResult
from .instance_actor import InstanceActor, InstanceGone, Preload, Started
from .mailbox import ActorUnavailable, Mailbox, MailboxFull
from .messages import DrainInbox, HealthTick
from .recovery import after_crash, retry_while_database_is_away, wait_for_database

log = logging.getLogger(__name__)


class Actor(Protocol):
    async def run(self, *, task_status: Started) -> None: ...


class ActorFactory(Protocol):
    """How the supervisor makes an actor: InstanceActor's constructor, or a fake in unit
    tests.  `preload` is what the boot already read for it (None: it reads its row itself)."""

    def __call__(
        self,
        name: str,
        deps: ActorDeps,
        mailbox: Mailbox,
        publish: Callable[[InstanceSnapshot], None],
        preload: Preload | None = None,
    ) -> Actor: ...


__all__ = ["ACCEPTING", "ActorStatus", "Child", "NotReady", "Supervisor"]

# Instance rows read per query at boot (one keyset page).
BOOT_PAGE = 2000


class NotReady(ActorUnavailable):
    """The supervisor is not running yet (start-up) or any more (shutdown)."""


class Supervisor:
    def __init__(
        self,
        deps: ActorDeps,
        *,
        policy: RestartPolicy | None = None,
        mailbox_capacity: int = 64,
        boot_concurrency: int = 8,
        actor_factory: ActorFactory = InstanceActor,
        metrics: Metrics | None = None,
    ) -> None:
        self.deps = deps
        self.metrics = Metrics(process=False) if metrics is None else metrics
        self.actor_factory = actor_factory
        self.policy = policy or RestartPolicy()
        self.mailbox_capacity = mailbox_capacity
        self.boot_concurrency = boot_concurrency
        self._children: dict[str, Child] = {}
        self._orphans = inbox.OrphanMarks()  # how far each unknown name's rows are flagged
        self._nursery: trio.Nursery | None = None
        self.running = False
        # One timer for the node: it ticks only the actors whose snapshot wants checks.
        self.health = HealthScheduler(deps.health_policy, self._health_tick)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for child in self._children.values():
            counts[child.status] = counts.get(child.status, 0) + 1
        return f"<Supervisor running={self.running} actors={counts}>"

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(
        self,
        doorbell: Doorbell | None = None,
        *,
        boot: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Boot every known instance's actor (unless `boot` is False: unit tests without a
        database), then answer the inbox's doorbell (new rows for these instances) until
        cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.running = True
                nursery.start_soon(self.health.run)
                task_status.started()
                if boot:
                    await retry_while_database_is_away("boot", self._boot, self.policy)
                while doorbell is not None:
                    self.notify_inbox(await doorbell.wait())
                await trio.sleep_forever()
        finally:
            self.running = False
            self._nursery = None
            for child in self._children.values():
                child.mailbox.drain_with(NotReady("the service is shutting down"))

    async def _boot(self) -> None:
        """Start every known instance's actor from rows read a page at a time.

        An actor with nothing stored for it to do (no pending inbox row, no open reply: the
        two name lists are read once, first) starts from its row without a query of its own;
        the others start a bounded number at a time, as they query.  Rows committed after the
        lists were read ring the doorbell, answered once the boot is done."""
        pool = self.deps.pool
        pending = set(await inbox.pending_instance_names(pool))
        replies = await auto_replies.open_reply_instance_names(pool)
        unknown = set(pending)  # pending names no row claims: orphans
        limiter = trio.CapacityLimiter(self.boot_concurrency)

        async def start_querying(name: str, preload: Preload) -> None:
            async with limiter:
                child = self._children.get(name)
                if child is None:
                    child = self._spawn(name, preload=preload)
                await child.ready.wait()

        after: str | None = None
        async with trio.open_nursery() as boot:
            while True:
                page = await instances.list_page(pool, after, BOOT_PAGE)
                if not page:
                    break
                for record in page:
                    name = record.instance_name
                    unknown.discard(name)
                    if name in self._children:
                        continue  # started already (a doorbell's rows, an earlier try)
                    preload = Preload(record, name in pending, name in replies)
                    if preload.pending_inbox or preload.open_replies:
                        boot.start_soon(start_querying, name, preload)
                    else:
                        self._spawn(name, preload=preload)
                after = page[-1].instance_name
                del page
                await trio.lowlevel.checkpoint()  # this page's actors start before the next
        for name in unknown:
            await inbox.mark_orphans(pool, name)

    # ---- actors ----------------------------------------------------------------------------

    def get(self, name: str) -> Child | None:
        return self._children.get(name)

    def children(self) -> list[Child]:
        return list(self._children.values())

    async def ensure_actor(self, name: str, *, revive: bool = False) -> Child:
        """The running actor of `name`, started if needed (it loads its state first).

        An actor an operator stopped, or one parked after a crash loop, stays down
        (ActorUnavailable) unless `revive` is given (the operator's start/restart).
        """
        if self._nursery is None:
            raise NotReady("the supervisor is not running")
        child = self._children.get(name)
        if revive and child is not None and child.status == "crashed":
            await self.stop_actor(name)  # parked: the operator does not wait for the cool-down
        if child is not None and child.deleted:
            # The instance was deleted, and its actor may still be ending: a row created since
            # is a new instance, with a new actor and a mailbox of its own.
            child = None
        if child is not None and child.stopped.is_set():
            if (child.stop_requested or child.status == "crashed") and not revive:
                child.check_available()
            child = self._spawn(name, child.mailbox, restarts=child.restarts)
        elif child is None:
            child = self._spawn(name)
        await child.ready.wait()
        child.check_available()
        if child.deleted or child.snapshot is None:
            raise ActorUnavailable(f"instance {name} does not exist")
        return child

    def _spawn(
        self,
        name: str,
        mailbox: Mailbox | None = None,
        *,
        restarts: int = 0,
        preload: Preload | None = None,
    ) -> Child:
        """A new record for `name` (the mailbox of the one it replaces, if any), its actor
        started in the supervisor's nursery."""
        assert self._nursery is not None
        if mailbox is None:
            mailbox = Mailbox(name, self.mailbox_capacity)
        child = Child(name, mailbox, restarts=restarts, on_wants_ticks=self.health.watch)
        self._children[name] = child
        # Named after the instance: no name string of its own per task (py-spy shows it too).
        self._nursery.start_soon(self._supervise, child, preload, name=name)
        return child

    def _health_tick(self, name: str) -> TickResult:
        """The scheduler's turn for `name`: a HealthTick when its actor runs and its snapshot
        wants one; "drop" when it cannot want one (it is watched again when it publishes a
        snapshot that does: `Child.publish`)."""
        child = self._children.get(name)
        if child is None or child.snapshot is None or not wants_health_tick(child.snapshot):
            return "drop"
        if child.status != "running":
            # Starting: the next turn.  Waiting for the database, parked or stopped: its
            # next start publishes its snapshot, which watches it again.
            return "wait" if child.status in ACCEPTING else "drop"
        try:
            child.mailbox.cast(HealthTick())
        except MailboxFull:
            return "wait"  # busy: the next tick comes soon enough
        return "ticked"

    async def call(self, name: str, message: Any, timeout: float) -> Any:
        child = await self.ensure_actor(name)
        return await child.mailbox.call(message, timeout)

    def cast(self, name: str, message: Any) -> None:
        child = self._children.get(name)
        if child is None:
            raise ActorUnavailable(f"no actor for {name}")
        child.check_available()
        child.mailbox.cast(message)

    async def stop_actor(self, name: str) -> Child | None:
        """Stop an actor (its queued calls are answered ActorUnavailable) and wait for it."""
        child = self._children.get(name)
        if child is not None:
            child.stop_requested = True
            if child.cancel_scope is not None:
                child.cancel_scope.cancel()
            await child.stopped.wait()
        return child

    async def restart_actor(self, name: str) -> Child:
        """Operator restart: also un-parks a crashed actor with a fresh budget.  It counts in
        `restarts`, like a restart after a crash and a revival."""
        stopped = await self.stop_actor(name)
        if stopped is not None:
            stopped.restarts += 1  # carried over to the new record by ensure_actor
            self.metrics.actor_restarted("operator")
        return await self.ensure_actor(name, revive=True)

    def notify_inbox(self, names: set[str]) -> None:
        """Rows were committed for these instances: their actors drain them."""
        for name in names:
            child = self._children.get(name)
            if child is not None and child.status in ACCEPTING and not child.deleted:
                child.mailbox.ring(DrainInbox())
            elif self._nursery is not None and (child is None or child.deleted):
                # A deleted instance's actor applies nothing more: its name is unknown again.
                self._nursery.start_soon(self._route_unknown, name)
            # A stopped or parked actor drains its rows when it starts again, and one waiting
            # for the database drains them when it is back.

    async def _route_unknown(self, name: str) -> None:
        """Rows for a name without an actor: start it, or flag the rows as orphans.  Runs in
        the supervisor's nursery, so nothing may escape: the rows wait for the next doorbell
        or the next boot."""
        clear_correlation()  # spawned by whichever request rang: not that request's work
        try:
            if await instances.find_by_name(self.deps.pool, name) is not None:
                await self.ensure_actor(name)
            else:
                # Each row once: a foreign instance that keeps sending must not cost a rescan
                # of all its rows on every doorbell.
                await self._orphans.mark(self.deps.pool, name)
        except ActorUnavailable:
            pass
        except Exception:
            log.exception("routing the inbox rows of %s failed; they wait for the next try", name)

    async def _supervise(self, child: Child, preload: Preload | None = None) -> None:
        """Run the actor.  A database outage is waited out (the budget untouched, the mailbox
        kept); a crash is restarted until the budget is spent; then the actor is parked and
        revived after a cool-down that grows with each parking.  (One coroutine, not two:
        a node holds one of these per instance.)"""
        if current_correlation() is not None:
            clear_correlation()  # the actor outlives the request that started it
        with trio.CancelScope() as scope:
            child.cancel_scope = scope
            outages = 0
            while True:
                child.status = "starting" if child.restarts == 0 else "restarting"
                log.debug("starting actor %s (restarts so far: %d)", child.name, child.restarts)
                ready = StartMarker(child)
                try:
                    actor = self.actor_factory(
                        child.name, self.deps, child.mailbox, child.publish, preload
                    )
                    preload = None  # a restart reads the row again (the preload may be stale)
                    await actor.run(task_status=ready)
                    break
                except InstanceGone:
                    child.gone = True
                    break
                except Exception as exc:
                    if child.deleted:
                        break
                    cause = root_cause(exc)
                    if is_transient(cause):
                        # An actor that had started begins a new outage; one that could not
                        # even load its state waits longer each time.
                        outages = 1 if ready.fired else outages + 1
                        await wait_for_database(child, cause, outages, self.policy)
                        continue
                    outages = 0
                    if not await after_crash(child, exc, cause, self.policy, self.metrics):
                        break
        if child.deleted and self._children.get(child.name) is child and self._nursery:
            # Rows stored while it was ending (after its delete) are nobody's: flagged orphans.
            self._nursery.start_soon(self._route_unknown, child.name)
        child.status = "stopped"
        child.mailbox.drain_with(ActorUnavailable(f"the actor of {child.name} is {child.status}"))
        child.ready.set()
        child.stopped.set()
