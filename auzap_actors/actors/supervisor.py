"""The supervisor: one child task per instance actor, restarts with backoff under a restart
budget, parks an actor that keeps crashing, and never lets one actor's failure reach another.

Background work runs in the supervisor's own nursery (started by the launcher), never in
quart-trio's `app.nursery`, whose failures would be silent.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from ..core.supervision import RestartPolicy, decide_restart
from ..core.views import InstanceSnapshot, health_view
from ..store import inbox, instances
from .instance_actor import ActorDeps, InstanceActor, InstanceGone
from .mailbox import ActorUnavailable, Mailbox, MailboxFull
from .messages import DrainInbox

log = logging.getLogger(__name__)

ActorStatus = Literal["starting", "running", "restarting", "crashed", "stopped"]


class NotReady(ActorUnavailable):
    """The supervisor is not running yet (start-up) or any more (shutdown)."""


@dataclass(eq=False)
class ActorHandle:
    """The supervisor's record of one actor; outlives restarts (the mailbox too)."""

    name: str
    mailbox: Mailbox
    snapshot: InstanceSnapshot | None = None
    status: ActorStatus = "starting"
    restarts: int = 0
    last_error: str | None = None
    crash_history: tuple[float, ...] = ()
    drain_requested: bool = False
    deleted: bool = False
    started_at: float = field(default_factory=time.time)
    ready: trio.Event = field(default_factory=trio.Event)
    cancel_scope: trio.CancelScope | None = None
    stop_requested: bool = False
    stopped: trio.Event = field(default_factory=trio.Event)

    def __repr__(self) -> str:
        return (
            f"<ActorHandle {self.name} {self.status} restarts={self.restarts} "
            f"mailbox={self.mailbox.size}/{self.mailbox.capacity}>"
        )

    def entry(self, now: float) -> dict[str, Any]:
        """This actor as a line of /admin/tree."""
        snap = self.snapshot
        return {
            "instance_name": self.name,
            "actor": self.status,
            "status": snap.state.status.value if snap else None,
            "mailbox": self.mailbox.stats(),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "health": health_view(snap, now) if snap else None,
            "owner_node": None,
            "lease_epoch": None,
        }

    def check_available(self) -> None:
        if self.status in ("crashed", "stopped"):
            raise ActorUnavailable(f"the actor of {self.name} is {self.status}")


class Supervisor:
    def __init__(
        self,
        deps: ActorDeps,
        *,
        policy: RestartPolicy | None = None,
        mailbox_capacity: int = 64,
        boot_concurrency: int = 8,
    ) -> None:
        self.deps = deps
        self.policy = policy or RestartPolicy()
        self.mailbox_capacity = mailbox_capacity
        self.boot_concurrency = boot_concurrency
        self._handles: dict[str, ActorHandle] = {}
        self._nursery: trio.Nursery | None = None
        self.running = False

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for handle in self._handles.values():
            counts[handle.status] = counts.get(handle.status, 0) + 1
        return f"<Supervisor running={self.running} actors={counts}>"

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.running = True
                task_status.started()
                await self._boot()
                await trio.sleep_forever()
        finally:
            self.running = False
            self._nursery = None
            for handle in self._handles.values():
                handle.mailbox.drain_with(NotReady("the service is shutting down"))

    async def _boot(self) -> None:
        """Start every known instance's actor, a bounded number at a time."""
        records = await instances.list_instances(self.deps.pool)
        limiter = trio.CapacityLimiter(self.boot_concurrency)

        async def start_one(name: str) -> None:
            async with limiter:
                try:
                    await self.ensure_actor(name)
                except ActorUnavailable:
                    pass

        async with trio.open_nursery() as boot:
            for record in records:
                boot.start_soon(start_one, record.instance_name)
        known = {r.instance_name for r in records}
        for name in await inbox.pending_instance_names(self.deps.pool):
            if name not in known:
                await inbox.mark_orphans(self.deps.pool, name)

    # ---- actors ----------------------------------------------------------------------------

    def get(self, name: str) -> ActorHandle | None:
        return self._handles.get(name)

    def handles(self) -> list[ActorHandle]:
        return list(self._handles.values())

    async def ensure_actor(self, name: str, *, revive: bool = False) -> ActorHandle:
        """The running actor of `name`, started if needed (it loads its state first).

        An actor an operator stopped, or one parked after a crash loop, stays down
        (ActorUnavailable) unless `revive` is given (the operator's start/restart).
        """
        if self._nursery is None:
            raise NotReady("the supervisor is not running")
        handle = self._handles.get(name)
        if handle is not None and handle.deleted:
            # The instance was deleted, and its actor may still be ending: a row created since
            # is a new instance, with a new actor and a mailbox of its own.
            handle = None
        if handle is not None and handle.stopped.is_set():
            if (handle.stop_requested or handle.status == "crashed") and not revive:
                handle.check_available()
            handle = ActorHandle(name, handle.mailbox, restarts=handle.restarts)
            self._handles[name] = handle
            self._nursery.start_soon(self._supervise, handle)
        elif handle is None:
            handle = ActorHandle(name, Mailbox(name, self.mailbox_capacity))
            self._handles[name] = handle
            self._nursery.start_soon(self._supervise, handle)
        await handle.ready.wait()
        if handle.deleted or handle.snapshot is None:
            raise ActorUnavailable(f"instance {name} does not exist")
        handle.check_available()
        return handle

    async def call(self, name: str, message: Any, timeout: float) -> Any:
        handle = await self.ensure_actor(name)
        return await handle.mailbox.call(message, timeout)

    def cast(self, name: str, message: Any) -> None:
        handle = self._handles.get(name)
        if handle is None:
            raise ActorUnavailable(f"no actor for {name}")
        handle.check_available()
        handle.mailbox.cast(message)

    async def stop_actor(self, name: str) -> ActorHandle | None:
        """Stop an actor (its queued calls are answered ActorUnavailable) and wait for it."""
        handle = self._handles.get(name)
        if handle is not None:
            handle.stop_requested = True
            if handle.cancel_scope is not None:
                handle.cancel_scope.cancel()
            await handle.stopped.wait()
        return handle

    async def restart_actor(self, name: str) -> ActorHandle:
        """Operator restart: also un-parks a crashed actor with a fresh budget."""
        await self.stop_actor(name)
        return await self.ensure_actor(name, revive=True)

    def notify_inbox(self, names: set[str]) -> None:
        """Doorbell from the inbox writer: rows were committed for these instances."""
        for name in names:
            handle = self._handles.get(name)
            if handle is not None and handle.status in ("running", "starting", "restarting"):
                handle.drain_requested = True
                try:
                    handle.mailbox.cast(DrainInbox())
                except MailboxFull:
                    pass  # drain_requested makes the actor drain after its current message
            elif self._nursery is not None and handle is None:
                self._nursery.start_soon(self._route_unknown, name)
            # A stopped or parked actor drains its rows when an operator starts it again.

    async def _route_unknown(self, name: str) -> None:
        if await instances.find_by_name(self.deps.pool, name) is not None:
            try:
                await self.ensure_actor(name)
            except ActorUnavailable:
                pass
        else:
            await inbox.mark_orphans(self.deps.pool, name)

    async def _supervise(self, handle: ActorHandle) -> None:
        with trio.CancelScope() as scope:
            handle.cancel_scope = scope
            await self._supervise_loop(handle)
        if scope.cancelled_caught or handle.status not in ("crashed",):
            handle.status = "stopped"
        handle.mailbox.drain_with(
            ActorUnavailable(f"the actor of {handle.name} is {handle.status}")
        )
        handle.ready.set()
        handle.stopped.set()

    async def _supervise_loop(self, handle: ActorHandle) -> None:
        """Run the actor; restart it after a crash until the restart budget is spent."""
        while True:
            handle.status = "starting" if handle.restarts == 0 else "restarting"
            log.debug("starting actor %s (restarts so far: %d)", handle.name, handle.restarts)
            try:
                await InstanceActor(self.deps, handle).run(task_status=_Ready(handle))
                return
            except InstanceGone:
                handle.deleted = True
                return
            except Exception as exc:
                if handle.deleted:
                    return
                error_id = uuid.uuid4().hex[:12]
                cause = _root_cause(exc)
                handle.last_error = f"[{error_id}] {type(cause).__name__}: {cause}"
                log.error("actor %s crashed (error %s)", handle.name, error_id, exc_info=exc)
                decision = decide_restart(handle.crash_history, trio.current_time(), self.policy)
                handle.crash_history = decision.history
                if not decision.restart:
                    handle.status = "crashed"
                    log.error("actor %s parked: restart budget spent", handle.name)
                    return
                handle.restarts += 1
                handle.status = "restarting"
                await trio.sleep(decision.delay_s)


def _root_cause(exc: BaseException) -> BaseException:
    """The actor's own exception inside the exception groups its nursery wraps it in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Ready:
    """task_status for an actor: marks the handle running and wakes `ensure_actor` waiters."""

    def __init__(self, handle: ActorHandle) -> None:
        self.handle = handle

    def started(self) -> None:
        self.handle.status = "running"
        self.handle.ready.set()
