"""What operators read from the database: pages of instances (filtered, keyset-paged), one
instance's inbox backlog and failed rows, and the inbox lag for /metrics.  Every statement is
bounded: pages by `limit`, counts by a cap, the lag by one probe of a partial index."""

from __future__ import annotations

import uuid
from typing import Any

from .instances import _COLUMNS, InstanceRecord, _record

# A backlog is counted up to this many rows (the count of a huge backlog is "at least").
BACKLOG_COUNT_CAP = 100_000
# The whole inbox's backlog, as the dashboard reads it every 2 s per open page: a smaller cap.
PENDING_COUNT_CAP = 10_000


async def page_instances(
    db: Any,
    *,
    after: str | None,
    limit: int,
    status: str | None = None,
    health: str | None = None,
    organization_id: uuid.UUID | None = None,
) -> list[InstanceRecord]:
    """Up to `limit` instances ordered by name, after the name `after`, filtered by stored
    status, stored health status and organization (each optional)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM whatsapp_instances"
        " WHERE ($1::text IS NULL OR instance_name > $1)"
        " AND ($2::text IS NULL OR coalesce(status, 'disconnected') = $2)"
        # An instance never checked: healthy if open, else disconnected (instances.py).
        " AND ($3::text IS NULL OR coalesce(health->>'status',"
        "      CASE WHEN status = 'open' THEN 'healthy' ELSE 'disconnected' END) = $3)"
        " AND ($4::uuid IS NULL OR organization_id = $4)"
        " ORDER BY instance_name LIMIT $5",
        after,
        status,
        health,
        organization_id,
        limit,
    )
    return [_record(r) for r in rows]


# Through the pending-rows index (instance_name, id): one instance's pending rows only.
BACKLOG_SQL = (
    "SELECT count(*) AS pending,"
    " extract(epoch FROM now() - min(received_at))::float8 AS oldest_age_s"
    " FROM (SELECT received_at FROM webhook_inbox WHERE instance_name = $1"
    "       AND applied_at IS NULL AND outcome IS DISTINCT FROM 'orphan' LIMIT $2) AS t"
)
# One probe of idx_webhook_inbox_unapplied (migration 0009), whatever the table holds.
LAG_SQL = (
    "SELECT extract(epoch FROM now() - received_at)::float8 FROM webhook_inbox"
    " WHERE applied_at IS NULL AND outcome IS DISTINCT FROM 'orphan' ORDER BY id LIMIT 1"
)


# The same predicate as idx_webhook_inbox_unapplied: an index-only walk of at most $1 entries.
PENDING_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM webhook_inbox"
    " WHERE applied_at IS NULL AND outcome IS DISTINCT FROM 'orphan' LIMIT $1) AS t"
)


async def inbox_pending(db: Any, cap: int = PENDING_COUNT_CAP) -> dict[str, Any]:
    """Stored events of every instance not applied yet (orphans aside), counted up to `cap`:
    `pending` and `pending_capped` (True: there are at least that many)."""
    pending = int(await db.fetchval(PENDING_SQL, cap))
    return {"pending": pending, "pending_capped": pending >= cap}


async def inbox_backlog(db: Any, instance_name: str) -> dict[str, Any]:
    """The instance's stored events not applied yet: how many (capped), and the age in seconds
    of the oldest (None when there is none)."""
    row = await db.fetchrow(BACKLOG_SQL, instance_name, BACKLOG_COUNT_CAP)
    age = row["oldest_age_s"]
    return {
        "pending": int(row["pending"]),
        "pending_capped": int(row["pending"]) >= BACKLOG_COUNT_CAP,
        "oldest_pending_age_s": None if age is None else round(max(0.0, age), 3),
    }


async def failed_rows_of(db: Any, instance_name: str, limit: int = 20) -> dict[str, Any]:
    """The instance's rows settled as failed: how many, and the latest `limit` with errors."""
    count = await db.fetchval(
        "SELECT count(*) FROM webhook_inbox"
        " WHERE instance_name = $1 AND outcome = 'error' AND applied_at IS NOT NULL",
        instance_name,
    )
    rows = await db.fetch(
        "SELECT id, event, last_error, attempts, request_id,"
        " extract(epoch FROM received_at)::float8 AS received_at FROM webhook_inbox"
        " WHERE instance_name = $1 AND outcome = 'error' AND applied_at IS NOT NULL"
        " ORDER BY id DESC LIMIT $2",
        instance_name,
        limit,
    )
    return {
        "count": int(count),
        "latest": [
            {
                "id": r["id"],
                "event": r["event"],
                "error": r["last_error"],
                "attempts": r["attempts"],
                "request_id": r["request_id"],
                "received_at": r["received_at"],
            }
            for r in rows
        ],
    }


async def inbox_lag_s(db: Any) -> float:
    """Age in seconds of the oldest stored event not applied yet (orphans aside); 0 when none.
    One probe of `idx_webhook_inbox_unapplied` (migration 0009)."""
    age = await db.fetchval(LAG_SQL)
    return 0.0 if age is None else max(0.0, float(age))
