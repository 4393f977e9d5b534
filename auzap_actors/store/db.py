"""The PostgreSQL pool (asyncpg on trio via triopg).

Every triopg call must run inside `trio_asyncio.open_loop()`: the launcher and the test
fixtures own that loop.  Pool settings follow STACK-NOTES: explicit sizes, and
`max_inactive_connection_lifetime=0` to avoid asyncpg's per-release timer piling up in
trio-asyncio, and a bounded wait for a connection (`acquire_timeout_s`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio
import trio_asyncio
from triopg._triopg import TrioPoolAcquireContextProxy, TrioPoolProxy

DEFAULT_ACQUIRE_TIMEOUT_S = 5.0


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

    def __init__(self, *args: Any, acquire_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self) -> Any:
        return TrioPoolAcquireContextProxy(
            self._asyncpg_pool.acquire(timeout=self.acquire_timeout_s)
        )


@asynccontextmanager
async def open_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S,
) -> AsyncIterator[Any]:
    """A triopg pool; closed on exit.  Waiting longer than `acquire_timeout_s` for one of its
    connections raises TimeoutError (transient)."""
    async with _BoundedPool(
        dsn,
        acquire_timeout_s=acquire_timeout_s,
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
