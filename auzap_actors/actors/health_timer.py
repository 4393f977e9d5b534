"""The node's health timer: one task for every instance actor, not one per actor.

It only produces inputs (a `HealthTick` cast into an actor's mailbox); whether a tick leads
to a check is the core step's decision (`core.instance`, `Tick`).  An actor whose snapshot
cannot want a check (`core.instance.wants_health_tick`: not expected open) is not scheduled at
all, so 100k idle accounts cost no timer and no wake-ups; the supervisor watches an actor
again as soon as it publishes a snapshot that wants ticks (connected, say).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from typing import Literal

import trio

from ..core.health import HealthPolicy, next_check_delay

# What the supervisor says of one due actor: "ticked", "wait" (not running yet, or its mailbox
# is full: no tick this time, scheduled again), "drop" (it cannot want a check: unscheduled
# until it is watched again).
TickResult = Literal["ticked", "wait", "drop"]


class HealthScheduler:
    """A heap of (due time, sequence, instance name); the live entry of a name is the one
    whose sequence `_live` holds, older ones are skipped when they surface."""

    def __init__(
        self,
        policy: HealthPolicy,
        tick: Callable[[str], TickResult],
        *,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._tick = tick
        self._sample = sample
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, int] = {}
        self._seq = 0
        self._next_at = math.inf
        self._wake = trio.Event()
        self.ticks = 0  # casts made (for tests and /admin)

    def __repr__(self) -> str:
        return f"<HealthScheduler watched={len(self._live)} ticks={self.ticks}>"

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, name: object) -> bool:
        return name in self._live

    def watch(self, name: str) -> None:
        """Schedule `name` (no-op when it is already): its first tick comes within one
        interval, at a random point so that actors that open together do not check together."""
        if name not in self._live:
            self._push(name, trio.current_time() + self.policy.interval_s * self._sample())

    def forget(self, name: str) -> None:
        self._live.pop(name, None)

    def _push(self, name: str, at: float) -> None:
        self._seq += 1
        self._live[name] = self._seq
        heapq.heappush(self._heap, (at, self._seq, name))
        if at < self._next_at:
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, seq, name = heapq.heappop(heap)
                if self._live.get(name) != seq:
                    continue  # forgotten, or scheduled again since
                del self._live[name]
                result = self._tick(name)
                if result == "ticked":
                    self.ticks += 1
                if result != "drop":
                    self._push(name, now + next_check_delay(self.policy, self._sample()))
            self._next_at = heap[0][0] if heap else math.inf
            self._wake = trio.Event()
            with trio.move_on_at(self._next_at):
                await self._wake.wait()
