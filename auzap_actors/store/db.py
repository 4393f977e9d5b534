"""The PostgreSQL pool (asyncpg on trio via triopg).

Every triopg call must run inside `trio_asyncio.open_loop()`: the launcher and the test
fixtures own that loop.  Pool settings follow STACK-NOTES: explicit sizes, and
`max_inactive_connection_lifetime=0` to avoid asyncpg's per-release timer piling up in
trio-asyncio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import triopg


async def _init_connection(conn: Any) -> None:
    # Runs on the asyncio side (asyncpg calls it): JSON columns come back as Python objects.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


@asynccontextmanager
async def open_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> AsyncIterator[Any]:
    """A triopg pool; closed on exit."""
    async with triopg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_inactive_connection_lifetime=0,
        init=_init_connection,
        command_timeout=30,
    ) as pool:
        yield pool


@asynccontextmanager
async def open_connection(dsn: str) -> AsyncIterator[Any]:
    """One dedicated connection (the inbox writer holds one for its whole life)."""
    async with triopg.connect(dsn) as conn:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        yield conn
