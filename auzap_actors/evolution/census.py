"""One look at every instance, shared by the periodic checks of one node.

Evolution's `GET /instance/fetchInstances` without a filter answers every instance's row
(`connectionStatus` among them, evolution-api-v2.md §2.5): one call instead of one per
instance.  A census is taken when a check asks and the last one is older than ``max_age_s``
(half the health interval), so 10,000 healthy instances cost Evolution two calls a minute
instead of 10,000, and this service no HTTP exchange per check.

Only good news is taken from it: an instance the census shows `open` is observed open.  Any
other answer (not open, not listed, no census because Evolution failed) sends the check to
Evolution for that instance alone, so a failure is always judged on a fresh look, and the
reconnect policy never acts on a census (`core.instance` marks which checks may share:
periodic checks of healthy instances).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from .errors import EvolutionError
from .types import InstanceInfo

log = logging.getLogger(__name__)

FetchAll = Callable[[], Awaitable[list[InstanceInfo]]]


class Census:
    """Owned by the running service (ActorDeps.census); all its actors ask the same one."""

    def __init__(self, fetch_all: FetchAll, max_age_s: float) -> None:
        self._fetch_all = fetch_all
        self.max_age_s = max_age_s
        self._status: dict[str, str] = {}
        self._taken_at = -math.inf
        self._failed_at = -math.inf
        self._pending: trio.Event | None = None
        self.taken = 0  # censuses taken (tests, /admin)

    def __repr__(self) -> str:
        return f"<Census {len(self._status)} instances, taken {self.taken} times>"

    async def status(self, name: str) -> str | None:
        """The instance's connectionStatus in a census no older than ``max_age_s``; None when
        there is none (Evolution failed lately) or it does not list the instance."""
        if trio.current_time() - self._taken_at > self.max_age_s:
            await self._refresh()
        if trio.current_time() - self._taken_at > self.max_age_s:
            return None
        return self._status.get(name)

    async def _refresh(self) -> None:
        pending = self._pending
        if pending is not None:  # another check is taking it: wait for that one
            await pending.wait()
            return
        if trio.current_time() - self._failed_at < self.max_age_s:
            return  # failed lately: checks go one by one until the next try
        self._pending = trio.Event()
        try:
            rows = await self._fetch_all()
        except EvolutionError as exc:
            log.info("census of Evolution's instances failed: %s", exc)
            self._failed_at = trio.current_time()
        else:
            self._status = {row.name: row.connection_status for row in rows}
            self._taken_at = trio.current_time()
            self.taken += 1
        finally:
            # Also when the taker was cancelled: the waiters then find no fresh census and
            # check alone.
            self._pending.set()
            self._pending = None
