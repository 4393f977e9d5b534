"""The supervisor's record of one actor (`Child`), kept lean: a node holds one per instance
(100k idle ones must fit in about 10 KiB each, task and snapshot included)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import trio

from ..core.instance import wants_health_tick
from ..core.views import InstanceSnapshot, health_view
from .mailbox import ActorUnavailable, DatabaseUnavailable, Mailbox

ActorStatus = Literal[
    "starting", "running", "restarting", "waiting_for_database", "crashed", "stopped"
]

# Statuses in which an actor takes letters (and the inbox's doorbell).
ACCEPTING = ("running", "starting", "restarting")


class Latch:
    """A one-way flag that can be awaited, like trio.Event; the Event (and its set of
    waiters) exists only while somebody waits, so an idle actor carries two slots."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()
            self._event = None

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


class Child:
    """The supervisor's record of one actor; outlives restarts (the mailbox too).

    Only the supervisor writes it, except `snapshot`, which only the actor writes (through
    `publish`): everybody else reads."""

    __slots__ = (
        "cancel_scope",
        "crash_history",
        "gone",
        "last_error",
        "mailbox",
        "name",
        "on_wants_ticks",
        "parkings",
        "ready",
        "restarts",
        "revive_at",
        "snapshot",
        "started_at",
        "status",
        "stop_requested",
        "stopped",
    )

    def __init__(
        self,
        name: str,
        mailbox: Mailbox,
        *,
        restarts: int = 0,
        on_wants_ticks: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.mailbox = mailbox
        self.snapshot: InstanceSnapshot | None = None
        self.status: ActorStatus = "starting"
        self.restarts = restarts
        self.last_error: str | None = None
        self.crash_history: tuple[float, ...] = ()
        # Times the restart budget was spent; each parking cools down longer.
        self.parkings = 0
        self.revive_at: float | None = None  # epoch seconds when a parked actor comes back
        self.gone = False  # the instance's row was not found when the actor started
        self.started_at = time.time()
        self.ready = Latch()
        self.cancel_scope: trio.CancelScope | None = None
        self.stop_requested = False
        self.stopped = Latch()
        # The node's health scheduler, told when a snapshot wants health ticks.
        self.on_wants_ticks = on_wants_ticks

    def __repr__(self) -> str:
        return (
            f"<Child {self.name} {self.status} restarts={self.restarts} "
            f"mailbox={self.mailbox.size}/{self.mailbox.capacity}>"
        )

    def publish(self, snapshot: InstanceSnapshot) -> None:
        self.snapshot = snapshot
        if self.on_wants_ticks is not None and wants_health_tick(snapshot):
            self.on_wants_ticks(self.name)

    @property
    def deleted(self) -> bool:
        return self.gone or (self.snapshot is not None and self.snapshot.deleted)

    def entry(self, now: float) -> dict[str, Any]:
        """This actor as a line of /admin/tree."""
        snap = self.snapshot
        return {
            "instance_name": self.name,
            "actor": self.status,
            "status": snap.state.status.value if snap else None,
            "mailbox": self.mailbox.stats(),
            "restarts": self.restarts,
            "parkings": self.parkings,
            "revive_at": self.revive_at,
            "last_error": self.last_error,
            "health": health_view(snap, now) if snap else None,
        }

    def check_available(self) -> None:
        if self.status == "waiting_for_database":
            raise DatabaseUnavailable(
                f"the actor of {self.name} waits for the database to come back; retry shortly"
            )
        if self.status in ("crashed", "stopped"):
            raise ActorUnavailable(f"the actor of {self.name} is {self.status}")


class StartMarker:
    """An actor's task_status: marks its child running and wakes `ensure_actor` waiters."""

    __slots__ = ("child", "fired")

    def __init__(self, child: Child) -> None:
        self.child = child
        self.fired = False

    def started(self) -> None:
        self.fired = True
        self.child.status = "running"
        self.child.ready.set()
