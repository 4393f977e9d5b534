"""The durable webhook inbox.

`InboxWriter` (in `inbox_writer.py`; re-exported here with its entry and exceptions from
`inbox_entry.py`) is the group-commit writer of STACK-NOTES: a request is answered 200 only
after its row committed.  The functions below are what the owning actor uses to apply rows in
arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .inbox_entry import InboxEntry, InboxRejected, InboxUnavailable, payload_text
from .inbox_writer import InboxWriter

__all__ = [
    "MAX_ATTEMPTS",
    "InboxEntry",
    "InboxRejected",
    "InboxRow",
    "InboxUnavailable",
    "InboxWriter",
    "fetch_pending",
    "mark_done",
    "mark_orphans",
    "payload_text",
    "pending_instance_names",
    "record_failure",
    "retire",
]

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    instance_name: str
    event: str
    payload: Any
    attempts: int


# ---- what the owning actor does with stored rows ----------------------------------------------


async def fetch_pending(
    db: Any, instance_name: str, after_id: int, limit: int = 100
) -> list[InboxRow]:
    rows = await db.fetch(
        "SELECT id, instance_name, event, payload, attempts FROM webhook_inbox"
        " WHERE instance_name = $1 AND applied_at IS NULL AND id > $2 AND attempts < $3"
        " ORDER BY id LIMIT $4",
        instance_name,
        after_id,
        MAX_ATTEMPTS,
        limit,
    )
    return [InboxRow(**dict(r.items())) for r in rows]


async def mark_done(db: Any, row_id: int, outcome: str, error: str | None = None) -> None:
    await db.execute(
        "UPDATE webhook_inbox SET applied_at = now(), outcome = $2, last_error = $3,"
        " attempts = attempts + 1 WHERE id = $1",
        row_id,
        outcome,
        error,
    )


async def record_failure(db: Any, row_id: int, error: str) -> None:
    """The row stays unapplied (replayed later, up to MAX_ATTEMPTS) with its error."""
    await db.execute(
        "UPDATE webhook_inbox SET outcome = 'error', attempts = attempts + 1,"
        " last_error = left($2, 2000) WHERE id = $1",
        row_id,
        error,
    )


async def pending_instance_names(db: Any) -> list[str]:
    rows = await db.fetch(
        "SELECT DISTINCT instance_name FROM webhook_inbox"
        " WHERE applied_at IS NULL AND attempts < $1",
        MAX_ATTEMPTS,
    )
    return [r["instance_name"] for r in rows]


async def mark_orphans(db: Any, instance_name: str) -> int:
    """Events for an instance we do not know: kept and flagged.  Applied if its row appears
    by other means than a connect (a restore); a row created by a connect retires them."""
    status: str = await db.execute(
        "UPDATE webhook_inbox SET outcome = 'orphan' WHERE instance_name = $1"
        " AND applied_at IS NULL AND outcome IS NULL",
        instance_name,
    )
    return int(status.split()[-1])


async def retire(db: Any, instance_name: str) -> int:
    """Events of an instance that no longer exists (deleted, or replaced by a new row under its
    name) stay in the table, marked 'deleted', and are never applied."""
    status: str = await db.execute(
        "UPDATE webhook_inbox SET applied_at = now(), outcome = 'deleted'"
        " WHERE instance_name = $1 AND applied_at IS NULL",
        instance_name,
    )
    return int(status.split()[-1])
