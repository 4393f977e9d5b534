"""The database of an operator's command: DATABASE_URL, or the embedded PostgreSQL of
AUZAP_DATA_DIR (the one `serve` uses without DATABASE_URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..config import ConfigError, ToolSettings
from ..serve import database
from ..store.db import open_pool
from ..store.migrate import available_migrations, migrate


@asynccontextmanager
async def tool_pool(
    settings: ToolSettings, *, apply_migrations: bool = False
) -> AsyncIterator[Any]:
    """A small pool.  The schema must be current (commands read and write today's tables);
    `apply_migrations` brings it there first (a restore into an empty database)."""
    async with database(settings) as dsn, open_pool(dsn, min_size=1, max_size=2) as pool:
        if apply_migrations:
            await migrate(pool)
        else:
            await _require_current_schema(pool)
        yield pool


async def _require_current_schema(pool: Any) -> None:
    exists = await pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations")}
    missing = [m for m in available_migrations() if m.version not in done]
    if missing:
        first = missing[0]
        raise ConfigError(
            f"the database schema is not current ({first.version:04d}_{first.name} not applied):"
            " run `auzap-actors migrate` first"
        )
