"""The durable webhook inbox.

`InboxWriter` (in `inbox_writer.py`; re-exported here with its entry and exceptions from
`inbox_entry.py`) is the group-commit writer of STACK-NOTES: a request is answered 200 only
after its row committed.  The functions below are what the owning actor uses to apply rows in
arrival order.
"""

from __future__ import annotations

from collections import OrderedDict
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
    "OrphanMarks",
    "fetch_pending",
    "mark_done",
    "mark_many_done",
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
    received_at: float | None = None  # epoch seconds, on the database's clock
    request_id: str | None = None  # the correlation id of the request that stored it


# ---- what the owning actor does with stored rows ----------------------------------------------


async def fetch_pending(
    db: Any, instance_name: str, after_id: int, limit: int = 100
) -> list[InboxRow]:
    rows = await db.fetch(
        "SELECT id, instance_name, event, payload, attempts, request_id,"
        " extract(epoch FROM received_at)::float8 AS received_at FROM webhook_inbox"
        " WHERE instance_name = $1 AND applied_at IS NULL AND id > $2 ORDER BY id LIMIT $3",
        instance_name,
        after_id,
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


async def mark_many_done(db: Any, settled: list[tuple[int, str, str | None]]) -> None:
    """Settle many rows at once: (row id, outcome, error) each, one statement."""
    if not settled:
        return
    ids, outcomes, errors = zip(*settled, strict=True)
    await db.execute(
        "UPDATE webhook_inbox AS w SET applied_at = now(), outcome = s.outcome,"
        " last_error = s.error, attempts = w.attempts + 1"
        " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS s(id, outcome, error)"
        " WHERE w.id = s.id",
        list(ids),
        list(outcomes),
        list(errors),
    )


async def record_failure(db: Any, row_id: int, error: str) -> int | None:
    """One failed attempt at a pending row: its error and attempt count are kept.  Returns the
    attempts so far, or None when the row is no longer pending (nothing to retry).  After
    MAX_ATTEMPTS the row is settled as failed: outcome 'error' with an applied_at."""
    attempts: int | None = await db.fetchval(
        "UPDATE webhook_inbox SET outcome = 'error', attempts = attempts + 1,"
        " last_error = left($2, 2000),"
        " applied_at = CASE WHEN attempts + 1 >= $3 THEN now() END"
        " WHERE id = $1 AND applied_at IS NULL RETURNING attempts",
        row_id,
        error,
        MAX_ATTEMPTS,
    )
    return attempts


async def failed_rows(db: Any, limit_per_instance: int = 3) -> dict[str, dict[str, Any]]:
    """Rows settled as failed, per instance: how many, and the latest few with their error."""
    rows = await db.fetch(
        "SELECT instance_name, count, id, event, last_error FROM ("
        "  SELECT instance_name, id, event, last_error,"
        "   count(*) OVER (PARTITION BY instance_name) AS count,"
        "   row_number() OVER (PARTITION BY instance_name ORDER BY id DESC) AS n"
        "  FROM webhook_inbox WHERE outcome = 'error' AND applied_at IS NOT NULL"
        ") AS t WHERE n <= $1 ORDER BY instance_name, id DESC",
        limit_per_instance,
    )
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = found.setdefault(r["instance_name"], {"count": r["count"], "latest": []})
        entry["latest"].append({"id": r["id"], "event": r["event"], "error": r["last_error"]})
    return found


async def pending_instance_names(db: Any) -> list[str]:
    rows = await db.fetch(
        "SELECT DISTINCT instance_name FROM webhook_inbox WHERE applied_at IS NULL"
    )
    return [r["instance_name"] for r in rows]


async def mark_orphans(db: Any, instance_name: str, after_id: int = 0) -> tuple[int, int]:
    """Events for an instance we do not know: kept and flagged (and deleted by retention once
    old).  Applied if its row appears by other means than a connect (a restore); a row created
    by a connect retires them.

    Only rows after `after_id` are looked at (the pending-rows index starts there): a caller
    that remembers how far it got marks each row once.  Returns (rows marked, the highest id
    marked, or `after_id` when none was)."""
    row = await db.fetchrow(
        "WITH marked AS (UPDATE webhook_inbox SET outcome = 'orphan' WHERE instance_name = $1"
        " AND applied_at IS NULL AND outcome IS NULL AND id > $2 RETURNING id)"
        " SELECT count(*) AS count, coalesce(max(id), $2) AS last_id FROM marked",
        instance_name,
        after_id,
    )
    return int(row["count"]), int(row["last_id"])


class OrphanMarks:
    """How far each unknown name's rows were marked as orphans, so that a foreign instance that
    keeps sending costs one indexed UPDATE of its new rows per doorbell, not a rescan of all its
    rows (quadratic).  Bounded: the least recently marked names are forgotten beyond
    `capacity`, and a forgotten name is rescanned once from its first row."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"<OrphanMarks names={len(self._last)}/{self.capacity}>"

    def __len__(self) -> int:
        return len(self._last)

    async def mark(self, db: Any, instance_name: str) -> int:
        """Flag the name's pending rows not flagged before; returns how many were flagged."""
        count, last_id = await mark_orphans(db, instance_name, self._last.get(instance_name, 0))
        # Another mark of the same name may have run meanwhile and gone further.
        self._last[instance_name] = max(last_id, self._last.get(instance_name, 0))
        self._last.move_to_end(instance_name)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return count


async def retire(db: Any, instance_name: str) -> int:
    """Events of an instance that no longer exists (deleted, or replaced by a new row under its
    name) stay in the table, marked 'deleted', and are never applied."""
    status: str = await db.execute(
        "UPDATE webhook_inbox SET applied_at = now(), outcome = 'deleted'"
        " WHERE instance_name = $1 AND applied_at IS NULL",
        instance_name,
    )
    return int(status.split()[-1])
