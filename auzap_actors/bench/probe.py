"""What the benchmarks read from the database: the inbox backlog and how much was applied.

The bench's orchestration is plain blocking code around processes; these few queries run on
their own short asyncio loop (asyncpg's home) rather than on the service's trio stack.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class InboxSample:
    pending: int  # rows stored, not yet applied
    lag_s: float  # age of the oldest of them (0 when none)
    applied: int  # rows applied (or settled) since the mark


async def _query(dsn: str, sql: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row: asyncpg.Record = await conn.fetchrow(sql, *args)
        return row
    finally:
        await conn.close()


def inbox_mark(dsn: str) -> int:
    """The inbox's highest row id: later samples count only rows after it."""
    row = asyncio.run(_query(dsn, "SELECT coalesce(max(id), 0) AS id FROM webhook_inbox"))
    return int(row["id"])


def inbox_sample(dsn: str, after_id: int) -> InboxSample:
    row = asyncio.run(
        _query(
            dsn,
            "SELECT count(*) FILTER (WHERE applied_at IS NULL AND outcome IS NULL) AS pending,"
            " coalesce(extract(epoch FROM now() - min(received_at)"
            "   FILTER (WHERE applied_at IS NULL AND outcome IS NULL)), 0)::float8 AS lag,"
            " count(*) FILTER (WHERE applied_at IS NOT NULL) AS applied"
            " FROM webhook_inbox WHERE id > $1",
            after_id,
        )
    )
    return InboxSample(int(row["pending"]), float(row["lag"]), int(row["applied"]))
