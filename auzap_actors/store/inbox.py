"""The durable webhook inbox.

`InboxWriter` is the group-commit writer of STACK-NOTES: requests queue their event on a
channel, one task holding one connection inserts everything queued (up to `max_batch`, after
at most `linger_s`) in ONE statement, then wakes the waiting requests.  A request is answered
200 only after its batch committed.  The functions below it are what the owning actor uses to
apply rows in arrival order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import trio

from .db import open_connection

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class InboxUnavailable(Exception):
    """The event could not be stored now; the webhook answers 503 and Evolution retries."""


class InboxRejected(Exception):
    """The database refuses this event itself (never storable): answered 400, not retried."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    dedup_key: str
    instance_name: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    instance_name: str
    event: str
    payload: Any
    attempts: int


@dataclass(slots=True, eq=False)
class _Waiter:
    entry: InboxEntry
    done: trio.Event = field(default_factory=trio.Event)
    duplicate: bool = False
    error: Exception | None = None


def _storable(value: Any) -> Any:
    """PostgreSQL text cannot hold U+0000 nor lone surrogates (JSON allows both): replace them
    with U+FFFD so that such an event is stored rather than refused."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def payload_text(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_storable(payload), ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        return json.dumps(_storable(payload), ensure_ascii=False, separators=(",", ":"))
    return text


_INSERT = (
    "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
    " SELECT k, i, e, p::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    " AS t(k, i, e, p) ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"
)


class InboxWriter:
    def __init__(
        self,
        dsn: str,
        *,
        on_committed: Callable[[set[str]], None],
        max_batch: int = 256,
        linger_s: float = 0.002,
        queue_capacity: int = 4096,
        submit_timeout_s: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._submit_timeout_s = submit_timeout_s
        self._send, self._receive = trio.open_memory_channel[_Waiter](queue_capacity)
        self.running = False
        self.batches = 0
        self.rows = 0

    def __repr__(self) -> str:
        queued = self._send.statistics().current_buffer_used
        return f"<InboxWriter running={self.running} queued={queued} batches={self.batches}>"

    async def submit(self, entry: InboxEntry) -> bool:
        """Store one event durably; True when it was already stored (a duplicate delivery).

        Raises InboxUnavailable when the writer is down, its queue is full, or the database
        did not commit in time.  On cancellation the event may or may not be stored; a
        re-delivery is then deduplicated.
        """
        if not self.running:
            raise InboxUnavailable("the inbox writer is not running")
        waiter = _Waiter(entry)
        try:
            self._send.send_nowait(waiter)
        except trio.WouldBlock:
            raise InboxUnavailable("the inbox queue is full") from None
        with trio.move_on_after(self._submit_timeout_s):
            await waiter.done.wait()
        if not waiter.done.is_set():
            raise InboxUnavailable("the database did not commit in time")
        if isinstance(waiter.error, InboxRejected):
            raise waiter.error
        if waiter.error is not None:
            raise InboxUnavailable(str(waiter.error)) from waiter.error
        return waiter.duplicate

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        backoff = 0.1
        while True:
            try:
                async with open_connection(self._dsn) as conn:
                    self.running = True
                    backoff = 0.1
                    if not started:
                        started = True
                        task_status.started()
                    await self._loop(conn)
            except (OSError, ConnectionError, trio.BrokenResourceError) as exc:
                log.warning("inbox writer lost its connection: %s", exc)
            except Exception as exc:  # asyncpg errors are not OSErrors
                if not started:
                    raise
                log.exception("inbox writer failed; reconnecting: %s", exc)
            finally:
                self.running = False
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _loop(self, conn: Any) -> None:
        while True:
            batch = [await self._receive.receive()]
            with trio.move_on_after(self._linger_s):
                while len(batch) < self._max_batch:
                    batch.append(await self._receive.receive())
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._write(conn, batch)

    async def _write(self, conn: Any, batch: list[_Waiter]) -> None:
        # The same key twice in one batch: the first inserts, the others are duplicates.
        first: dict[str, _Waiter] = {}
        for waiter in batch:
            if waiter.entry.dedup_key in first:
                waiter.duplicate = True
            else:
                first[waiter.entry.dedup_key] = waiter
        unique = list(first.values())
        try:
            inserted = await self._insert(conn, unique)
        except asyncpg.PostgresError:
            # One bad row must not fail its neighbours: store them one by one.
            inserted = await self._insert_each(conn, unique)
        except Exception as exc:
            for waiter in batch:
                waiter.error = exc
                waiter.done.set()
            raise
        for waiter in unique:
            waiter.duplicate = waiter.error is None and waiter.entry.dedup_key not in inserted
        self.batches += 1
        self.rows += len(inserted)
        for waiter in batch:
            waiter.done.set()
        names = {w.entry.instance_name for w in unique if w.entry.dedup_key in inserted}
        if names:
            self._on_committed(names)

    async def _insert_each(self, conn: Any, waiters: list[_Waiter]) -> set[str]:
        inserted: set[str] = set()
        for waiter in waiters:
            try:
                inserted |= await self._insert(conn, [waiter])
            except asyncpg.PostgresError as exc:
                log.warning("inbox refused an event of %s: %s", waiter.entry.instance_name, exc)
                waiter.error = InboxRejected(f"the database refused the event: {exc}")
        return inserted

    async def _insert(self, conn: Any, waiters: list[_Waiter]) -> set[str]:
        entries = [w.entry for w in waiters]
        rows = await conn.fetch(
            _INSERT,
            [e.dedup_key for e in entries],
            [e.instance_name for e in entries],
            [e.event for e in entries],
            [payload_text(e.payload) for e in entries],
        )
        return {r["dedup_key"] for r in rows}


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
