"""The PostgreSQL pool (asyncpg on trio via triopg).

Every triopg call must run inside `trio_asyncio.open_loop()`: the launcher and the test
fixtures own that loop.  Pool settings follow STACK-NOTES: explicit sizes, and
`max_inactive_connection_lifetime=0` to avoid asyncpg's per-release timer piling up in
trio-asyncio, and a bounded wait for a connection (`acquire_timeout_s`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import trio
import trio_asyncio
from triopg._triopg import TrioPoolAcquireContextProxy, TrioPoolProxy

log = logging.getLogger(__name__)

DEFAULT_ACQUIRE_TIMEOUT_S = 5.0
# Connections the service may hold.  A statement's latency under load is scheduler turns of
# this process, not database time, so work on several connections overlaps: with 100 busy
# instances each applying its own small groups, 10 connections made actors queue past the
# acquire timeout (and wait for "the database"); PostgreSQL's default allows 100 sessions.
DEFAULT_POOL_SIZE = 32
# At most this many `run_on_connection` units (inbox groups) at once.  Each instance applies its
# own rows in its own transactions: with 100 busy instances and no bound, every doorbell started
# a group of one or two rows, and their fixed cost took the CPU the ingest on the same loop needs
# (acknowledged webhooks fell to a third).  Waiting here lets rows gather into bigger groups;
# measured with 100 instances under load: 8 at once kept 6 rows a group (lag up to 2.3 s),
# 16 kept 3 (1.7 s, a fifth fewer webhooks acknowledged), 12 kept 4 (1.4 s).
UNITS_AT_ONCE = 12

T = TypeVar("T")


async def _init_connection(conn: Any) -> None:
    # Runs on the asyncio side (asyncpg calls it): JSON columns come back as Python objects.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class _BoundedPool(TrioPoolProxy):  # type: ignore[misc]
    """triopg's pool, whose every acquire gives up after `acquire_timeout_s`.

    triopg's `acquire()` takes no timeout and its `fetch`/`execute`/`fetchval`/... acquire
    through it, so overriding it bounds them all.  The timeout is asyncpg's own: it is applied
    on the asyncio side, which hands back a connection acquired at the last moment instead of
    losing it the way a trio-side cancellation of the bridged call could.  It raises
    `TimeoutError` (an OSError), which `faults.is_transient` counts as "the database is not
    there right now".  triopg exposes no public way to pass it: this reaches its pool's
    private `_asyncpg_pool`, fine for a pinned, unmaintained dependency (STACK-NOTES).
    """

    def __init__(
        self, *args: Any, acquire_timeout_s: float, units_at_once: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s
        # `run_on_connection` units in flight; the others wait here, in order, without the
        # acquire timeout (a queue of busy instances is not a database outage).
        self.units = trio.Semaphore(units_at_once)

    def acquire(self) -> Any:
        return TrioPoolAcquireContextProxy(
            self._asyncpg_pool.acquire(timeout=self.acquire_timeout_s)
        )

    async def _on_asyncio_side(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async with self._asyncpg_pool.acquire(timeout=self.acquire_timeout_s) as conn:
            return await work(conn)


async def run_on_connection(pool: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """`await work(conn)` with one of the pool's connections, crossing the trio->asyncio
    bridge once for the whole unit of work instead of once per statement.

    Each triopg call is a bridged call whose every step waits for the trio scheduler to come
    round again: under load (dozens of runnable request tasks) one statement costs several
    scheduler cycles, and acquire, BEGIN, each statement, COMMIT and release each pay it.  Here
    `work` runs as one asyncio task on a plain asyncpg connection, and its statements follow
    each other on the asyncio side.  So `work` must await nothing but `conn` (no trio call):
    the store's functions, which only await the connection they are given, qualify.  Errors
    (a refused acquire's TimeoutError included) and cancellation cross back unchanged.  At most
    `UNITS_AT_ONCE` units run at once; the others wait their turn on the trio side.
    A pool that is not ours (no bounded acquire) runs `work` on a triopg connection."""
    if isinstance(pool, _BoundedPool):
        async with pool.units:
            result: T = await trio_asyncio.aio_as_trio(pool._on_asyncio_side)(work)
        return result
    async with pool.acquire() as conn:
        return await work(conn)


def batch_asyncio_callbacks() -> None:
    """Make the running trio-asyncio loop run every asyncio callback already queued each time
    it gets a turn, instead of one per trio scheduler round.

    trio-asyncio runs asyncio's callbacks (a socket read handed to asyncpg, a task step, a
    future's done-callback) from one trio task that takes ONE callback from its queue and then
    yields to the scheduler (`_main_loop_one`, a memory-channel receive: a checkpoint per item).
    A statement costs a few callbacks, so under load every database call in the process
    (every pool connection, the inbox writer's) shares one callback per scheduler round: 8
    connections at once go no faster than one (measured at 64 busy tasks: 48 round trips/s
    with 8 connections, 37 with one; 465/s with this).  asyncio's own loop runs everything
    ready per iteration; this does the same: after the first callback, the ones queued at that
    moment are run with the loop's own no-wait step (callbacks queued meanwhile wait for the
    next turn, so a turn is bounded).  It is set on this loop object only (an instance
    attribute shadowing the method), once; it reaches trio-asyncio's private `_main_loop_one`
    and `_q_recv` (as `_BoundedPool` reaches triopg's), so pyproject.toml keeps trio-asyncio
    below its next minor version; a version without them runs unbatched, with a warning."""
    loop = trio_asyncio.current_loop.get()
    if loop is None or "_main_loop_one" in vars(loop):
        return
    one = getattr(loop, "_main_loop_one", None)
    queue = getattr(loop, "_q_recv", None)
    if one is None or queue is None:
        log.warning(
            "this trio-asyncio has no _main_loop_one/_q_recv: database calls run one asyncio"
            " callback per scheduler round (slower under load)"
        )
        return

    async def main_loop_turn(no_wait: bool = False) -> None:
        await one(no_wait)
        for _ in range(queue.statistics().current_buffer_used):
            try:
                await one(True)  # never waits: raises WouldBlock when the queue is empty
            except trio.WouldBlock:
                return

    loop._main_loop_one = main_loop_turn


@asynccontextmanager
async def open_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = DEFAULT_POOL_SIZE,
    acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S,
) -> AsyncIterator[Any]:
    """A triopg pool; closed on exit.  Waiting longer than `acquire_timeout_s` for one of its
    connections raises TimeoutError (transient).  Tunes the running loop for its connections
    (`batch_asyncio_callbacks`)."""
    batch_asyncio_callbacks()
    async with _BoundedPool(
        dsn,
        acquire_timeout_s=acquire_timeout_s,
        units_at_once=min(max_size, UNITS_AT_ONCE),
        min_size=min_size,
        max_size=max_size,
        max_inactive_connection_lifetime=0,
        init=_init_connection,
        command_timeout=30,
    ) as pool:
        yield pool


class DirectConnection:
    """One asyncpg connection driven from trio, for a task that owns it and replaces it when it
    dies (the inbox writer).

    Not triopg's connection: triopg shields an unbounded `close()` from cancellation, and a
    close towards a peer that stopped answering (a dead TCP link) waits until the kernel gives
    up, minutes later.  Here `abort()` drops the socket at once and `close()` is bounded.
    Calls must run inside `trio_asyncio.open_loop()`.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @classmethod
    async def open(
        cls, dsn: str, *, timeout_s: float, server_settings: dict[str, str] | None = None
    ) -> DirectConnection:
        """Connect within `timeout_s` (asyncpg's timeout, plus trio's as a backstop)."""
        with trio.fail_after(timeout_s + 1):
            raw = await trio_asyncio.aio_as_trio(asyncpg.connect)(
                dsn, timeout=timeout_s, server_settings=server_settings
            )
        return cls(raw)

    def __repr__(self) -> str:
        return f"<DirectConnection closed={self.is_closed()}>"

    def is_closed(self) -> bool:
        return bool(self._raw.is_closed())

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await trio_asyncio.aio_as_trio(self._raw.fetch)(query, *args)
        return rows

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await trio_asyncio.aio_as_trio(self._raw.fetchval)(query, *args)

    def abort(self) -> None:
        """Drop the socket without a goodbye: for a connection that failed or timed out."""
        self._raw.terminate()

    async def close(self, timeout_s: float = 1.0) -> None:
        """Say goodbye to the server within `timeout_s`, else abort.  Runs shielded: it is
        what a cancelled owner does on its way out."""
        with trio.CancelScope(shield=True):
            try:
                # asyncpg aborts the socket itself when its close times out or fails.
                await trio_asyncio.aio_as_trio(self._raw.close)(timeout=timeout_s)
            except Exception:
                self.abort()
