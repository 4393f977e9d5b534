"""Retention: every table that grows with traffic loses its rows once they are old enough.

What expires, and when (ages from `RetentionPolicy`):

- Settled inbox rows (outcome applied, unhandled, invalid or deleted) `inbox_days` after they
  were settled.  Their only later use is deduplication of re-deliveries, and Evolution stops
  re-delivering about 25 minutes after the first attempt: a day is already ample.
- Rows settled as failed (outcome 'error' with an applied_at) `failed_days` after they were
  settled: longer, because operators read them (`/admin/tree`) to find the bug behind them.
- Orphans (outcome 'orphan': still pending, for a name that never became an instance)
  `inbox_days` after they were received.  A restore that brings the name back in time still
  finds them.
- `message_patches` rows (receipts and edits that came before their message) `inbox_days`
  after they were created: their message is not coming any more.
- Settled `auto_replies` rows (sent, failed, skipped) `failed_days` after they were settled:
  the limits read only the last day, operators read failures for longer.  A decision not
  settled yet never expires (it is work not done).

Rows still pending for a known instance never expire: they are work not done yet.

How: one statement deletes at most `batch_size` rows, the oldest first, found through a
partial index on their age (migration 0005), and commits on its own; the next statement comes
after `pause_s`.  Ingest is never blocked: a statement locks only the rows it deletes (no table
lock), those rows are old, and `SKIP LOCKED` lets two nodes prune side by side without
waiting for each other.  The pause leaves the database (and autovacuum) room between batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from .faults import is_transient

log = logging.getLogger(__name__)

DAY_S = 86400.0

# Each statement takes ($1) the age in seconds and ($2) the batch size, and deletes at most
# that many rows.  The inner SELECT walks the partial index in age order; `id = ANY(ARRAY(...))`
# keeps the outer delete on the primary key whatever the planner thinks of the subquery's size.
DELETE_SETTLED = (
    "DELETE FROM webhook_inbox WHERE id = ANY(ARRAY("
    "SELECT id FROM webhook_inbox"
    " WHERE applied_at < now() - $1::float8 * interval '1 second' AND outcome <> 'error'"
    " ORDER BY applied_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)
DELETE_FAILED = (
    "DELETE FROM webhook_inbox WHERE id = ANY(ARRAY("
    "SELECT id FROM webhook_inbox"
    " WHERE applied_at < now() - $1::float8 * interval '1 second' AND outcome = 'error'"
    " ORDER BY applied_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)
DELETE_ORPHANS = (
    "DELETE FROM webhook_inbox WHERE id = ANY(ARRAY("
    "SELECT id FROM webhook_inbox"
    " WHERE received_at < now() - $1::float8 * interval '1 second'"
    " AND applied_at IS NULL AND outcome = 'orphan'"
    " ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)
# message_patches has a three-column key: the row's ctid names it within this one statement
# (the subquery locks the rows, so they cannot move before the delete reaches them).
DELETE_PATCHES = (
    "DELETE FROM message_patches WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM message_patches"
    " WHERE created_at < now() - $1::float8 * interval '1 second'"
    " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)

DELETE_AUTO_REPLIES = (
    "DELETE FROM auto_replies WHERE id = ANY(ARRAY("
    "SELECT id FROM auto_replies"
    " WHERE settled_at < now() - $1::float8 * interval '1 second'"
    " ORDER BY settled_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    inbox_days: float = 7.0  # settled inbox rows, orphans, waiting patches
    failed_days: float = 30.0  # inbox rows settled as failed
    interval_s: float = 600.0  # between the end of a round and the start of the next
    first_delay_s: float = 60.0  # the first round, shortly after start (boot comes first)
    batch_size: int = 1000
    pause_s: float = 0.05  # between two batches of one kind

    def kinds(self) -> list[tuple[str, str, float]]:
        """(name, statement, age in seconds) of every kind of expiring row, in pruning order."""
        inbox_s, failed_s = self.inbox_days * DAY_S, self.failed_days * DAY_S
        return [
            ("settled inbox rows", DELETE_SETTLED, inbox_s),
            ("failed inbox rows", DELETE_FAILED, failed_s),
            ("orphan inbox rows", DELETE_ORPHANS, inbox_s),
            ("message patches", DELETE_PATCHES, inbox_s),
            ("settled auto-replies", DELETE_AUTO_REPLIES, failed_s),
        ]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one kind's pruning did in one round."""

    kind: str
    rows: int
    batches: int
    seconds: float
    error: str | None = None  # the round of this kind stopped on this error


async def prune(
    pool: Any, statement: str, age_s: float, *, batch_size: int, pause_s: float, kind: str = ""
) -> Pruned:
    """Run one DELETE statement until a batch comes back short.  Errors propagate (rows
    deleted so far stay deleted: every batch commits on its own)."""
    started = trio.current_time()
    rows = batches = 0
    while True:
        status: str = await pool.execute(statement, age_s, batch_size)
        deleted = int(status.split()[-1])
        rows += deleted
        batches += 1
        if deleted < batch_size:
            return Pruned(kind, rows, batches, trio.current_time() - started)
        await trio.sleep(pause_s)


async def prune_all(pool: Any, policy: RetentionPolicy) -> list[Pruned]:
    """One round: every kind in turn.  A failing kind is reported (and logged) and the round
    goes on with the next one; nothing but cancellation escapes."""
    results = []
    for kind, statement, age_s in policy.kinds():
        started = trio.current_time()
        try:
            result = await prune(
                pool,
                statement,
                age_s,
                batch_size=policy.batch_size,
                pause_s=policy.pause_s,
                kind=kind,
            )
        except Exception as exc:
            if is_transient(exc):
                log.warning("retention: pruning %s stopped, retried next round: %r", kind, exc)
            else:
                log.error("retention: pruning %s failed; retried next round", kind, exc_info=exc)
            result = Pruned(kind, 0, 0, trio.current_time() - started, repr(exc))
        if result.rows:
            log.info(
                "retention: deleted %d %s in %d batch(es), %.2f s",
                result.rows,
                kind,
                result.batches,
                result.seconds,
            )
        results.append(result)
    return results


async def run_retention(
    pool: Any,
    policy: RetentionPolicy,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune `policy.first_delay_s` after start, then `policy.interval_s` after the end of each
    round, until cancelled.  Never dies: a database that is away, or a bug, costs one round
    (logged), and the next round tries again."""
    task_status.started()
    await trio.sleep(policy.first_delay_s)
    while True:
        try:
            await prune_all(pool, policy)
        except Exception:
            # prune_all reports its errors itself; this is a last line against a bug in it.
            log.exception("retention: round failed; retried next round")
        await trio.sleep(policy.interval_s)
