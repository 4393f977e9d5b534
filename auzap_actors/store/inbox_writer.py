"""The group-commit writer of the webhook inbox (imported through `store.inbox`).

Requests queue their event on a channel; one task holding one connection inserts everything
queued (up to `max_batch`) in ONE statement, then wakes the waiting requests.  A request is
answered 200 only after its row committed.  By default the writer does not linger for more
rows: under load they queue while the previous statement and its commit are in flight, so
batches grow by themselves, and a lone webhook is not made to wait (a 2 ms linger cost the
`fanout` bench's webhook 2.5 ms of its 5.5 ms acknowledgement, and gained nothing at c=64).

What a failure does (`faults.py` decides what an error means):

- A data error (SQLSTATE classes 22, 23, 54): the batch is stored again row by row and only the
  rows PostgreSQL refuses get `InboxRejected` (HTTP 400: Evolution drops the event for good).
- A transient error (a lost connection, a shutdown, read-only, a timeout): the connection is
  replaced and the rows not yet settled are tried ONCE more on the new one before anyone hears
  503.  If that fails too they get `InboxUnavailable` (503: Evolution re-delivers), and the writer
  reconnects with a capped, jittered backoff.  A request that arrives meanwhile does not wait
  for the backoff: it brings the next attempt forward (attempts stay `RETRY_GAP_S` apart) and
  hears its outcome, so the first webhook after the database is back is stored, not refused.
- Any other error: `InboxUnavailable` for that batch.  An answer from PostgreSQL leaves the
  connection in service; anything else (a bug) is logged with its traceback and the connection
  replaced.  Once started, the writer never dies: only cancellation ends it.

While idle the writer checks its connection every `idle_check_s` (`SELECT 1`, once a minute by
default), so a database that restarted while nothing arrived is usually reconnected to before
the next webhook; when it is not, that webhook's batch meets the dead link and is retried once
on a fresh connection, so it is stored all the same.  Every
statement has a timeout on the server (`statement_timeout`) and, a little longer, on our side:
a TCP link that went silent cannot hold the webhooks until the kernel gives up.  That
connection, with its timeouts and its failure counts, is `inbox_link.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import trio

from .faults import backoff_delay, is_data_error, is_transient, sqlstate
from .inbox_entry import InboxEntry, InboxRejected, InboxUnavailable, payload_text
from .inbox_link import InboxLink, describe

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Waiter:
    entry: InboxEntry
    done: trio.Event = field(default_factory=trio.Event)
    settled: bool = False  # stored, found already stored, or refused: final either way
    inserted: bool = False  # this writer inserted the row
    duplicate: bool = False
    ring: bool = False  # tell the owner that rows may be waiting
    refused: str | None = None  # -> InboxRejected
    failed: str | None = None  # -> InboxUnavailable


_INSERT = (
    "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload, request_id)"
    " SELECT k, i, e, p::jsonb, r FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[]) AS t(k, i, e, p, r) ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"
)


# While the database is down, a waiting request brings the next connect attempt forward, but
# attempts are never closer together than this.
RETRY_GAP_S = 0.25


class InboxWriter:
    def __init__(
        self,
        dsn: str,
        *,
        on_committed: Callable[[set[str]], None],
        max_batch: int = 256,
        linger_s: float = 0.0,
        queue_capacity: int = 4096,
        submit_timeout_s: float = 10.0,
        statement_timeout_s: float = 3.0,
        connect_timeout_s: float = 3.0,
        idle_check_s: float = 60.0,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 2.0,
    ) -> None:
        # With the defaults, a batch on a silent link fails its statement after 4 s and its
        # reconnect after 3 s: 7 s, under submit_timeout_s, so the request hears the real
        # outcome.  A link that dies between a fresh connect and the retry can still reach it.
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._submit_timeout_s = submit_timeout_s
        self._idle_check_s = idle_check_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._send, self._receive = trio.open_memory_channel[_Waiter](queue_capacity)
        self._link = InboxLink(
            dsn, statement_timeout_s=statement_timeout_s, connect_timeout_s=connect_timeout_s
        )
        self._wanted = trio.Event()  # a request arrived while the writer waits to reconnect
        self._started = False
        self.running = False
        self.batches = 0
        self.rows = 0
        self.rejected = 0

    @property
    def reconnects(self) -> int:
        """Connections opened after the first one."""
        return max(0, self._link.connects - 1)

    def stats(self) -> dict[str, Any]:
        """What the operators' tree shows of the writer (its repr, as fields)."""
        return {
            "running": self.running,
            "queued": self._send.statistics().current_buffer_used,
            "batches": self.batches,
            "rows": self.rows,
            "rejected": self.rejected,
            "reconnects": self.reconnects,
        }

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={v}" for k, v in self.stats().items())
        return f"<InboxWriter {fields}>"

    async def submit(self, entry: InboxEntry) -> bool:
        """Store one event durably; True when it was already stored (a duplicate delivery).

        Raises InboxRejected when PostgreSQL refuses this event's data (it never will store
        it), InboxUnavailable when the writer is reconnecting, its queue is full, or the
        database did not commit in time.  On cancellation the event may or may not be stored;
        a re-delivery is then deduplicated.
        """
        if not self._started:
            raise InboxUnavailable("the inbox writer is not running")
        waiter = _Waiter(entry)
        try:
            self._send.send_nowait(waiter)
        except trio.WouldBlock:
            raise InboxUnavailable("the inbox queue is full") from None
        self._wanted.set()
        with trio.move_on_after(self._submit_timeout_s):
            await waiter.done.wait()
        if not waiter.done.is_set():
            raise InboxUnavailable("the database did not commit in time")
        if waiter.refused is not None:
            raise InboxRejected(waiter.refused)
        if waiter.failed is not None:
            raise InboxUnavailable(waiter.failed)
        return waiter.duplicate

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then store batches until cancelled.

        Before the first connection, an error that is not transient (a wrong DSN or password, a
        missing database) is raised: the service must not start half-configured; transient ones
        are retried.  After it, nothing but cancellation ends this task.  On cancellation the
        queued requests are answered InboxUnavailable and the connection is closed.
        """
        started = False
        try:
            while True:
                try:
                    if not self._link.connected:
                        await self._link.connect()
                    self.running = True
                    if not started:
                        started = self._started = True
                        task_status.started()
                    await self._serve()
                except Exception as exc:
                    if not started and not is_transient(exc):
                        raise
                    self._link.lost(exc)
                # The first reconnect is immediate: requests are queued behind it.  After a
                # second failure in a row the database is down: the requests that waited for
                # that attempt hear 503, and the next attempt waits for the backoff or for a
                # request, whichever comes first.
                if self._link.failures > 1:
                    self.running = False
                    self._refuse_queued("the database is unavailable; retry later")
                    delay = backoff_delay(
                        self._link.failures - 1,
                        base_s=self._backoff_base_s,
                        cap_s=self._backoff_cap_s,
                    )
                    await self._wait_for_retry(delay)
        finally:
            self.running = self._started = False
            self._refuse_queued("the inbox writer stopped")
            await self._link.close()

    # ---- connection ---------------------------------------------------------------------------

    async def _wait_for_retry(self, backoff_s: float) -> None:
        """Until the next connect attempt: `backoff_s`, or sooner when a request is waiting
        (then at least RETRY_GAP_S after the last attempt)."""
        self._wanted = trio.Event()
        if self._send.statistics().current_buffer_used:
            self._wanted.set()
        with trio.move_on_after(backoff_s):
            await self._wanted.wait()
            await trio.sleep_until(self._link.last_attempt + RETRY_GAP_S)

    def _refuse_queued(self, reason: str) -> None:
        while True:
            try:
                waiter = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            waiter.failed = reason
            waiter.done.set()

    # ---- batches ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._write(batch)
            else:
                # Idle: is the link still there?  Cheaper to learn it now than on a webhook.
                await self._link.query("SELECT 1")
                self._link.failures = 0

    async def _next_batch(self) -> list[_Waiter]:
        """The next batch, or [] after `idle_check_s` without a request."""
        first: _Waiter | None = None
        with trio.move_on_after(self._idle_check_s):
            first = await self._receive.receive()
        if first is None:
            return []
        # The linger runs outside the idle scope: its deadline must not drop received waiters.
        batch = [first]
        if self._linger_s > 0:  # tests gather a known batch this way
            with trio.move_on_after(self._linger_s):
                while len(batch) < self._max_batch:
                    batch.append(await self._receive.receive())
        while len(batch) < self._max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _write(self, batch: list[_Waiter]) -> None:
        """Settle every waiter of the batch: stored, duplicate, refused or failed."""
        # The same key twice in one batch: the first is stored, the others share its outcome.
        heads: dict[str, _Waiter] = {}
        for waiter in batch:
            heads.setdefault(waiter.entry.dedup_key, waiter)
        unique = list(heads.values())
        try:
            try:
                await self._store(unique, retried=False)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Replace the connection and try the unsettled rows once more before anyone
                # hears 503: a restarted server or a terminated backend is repaired here.
                self._link.lost(exc)
                await self._link.connect()
                await self._store([w for w in unique if not w.settled], retried=True)
            self._link.failures = 0
        except Exception as exc:
            reason = f"the database is unavailable ({describe(exc)})"
            for waiter in unique:
                if not waiter.settled:
                    waiter.failed = reason
            if isinstance(exc, asyncpg.PostgresError) and not is_transient(exc):
                # PostgreSQL answered, so the link is fine; the statement does not fit this
                # database (a missing table, a permission).  Not the event's fault: 503.
                log.error("inbox writer: batch refused, SQLSTATE %s: %s", sqlstate(exc), exc)
                return
            raise
        finally:
            self._finish(batch, heads)

    async def _store(self, waiters: list[_Waiter], *, retried: bool) -> None:
        if not waiters:
            return
        try:
            keys = await self._insert(waiters)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(waiters) == 1:
                self._refuse(waiters[0], exc)
                return
            # One bad row must not fail its neighbours: store them one by one.
            for waiter in waiters:
                try:
                    keys = await self._insert([waiter])
                except Exception as row_exc:
                    if not is_data_error(row_exc):
                        raise
                    self._refuse(waiter, row_exc)
                else:
                    self._settle([waiter], keys, retried=retried)
            return
        self._settle(waiters, keys, retried=retried)

    async def _insert(self, waiters: list[_Waiter]) -> set[str]:
        entries = [w.entry for w in waiters]
        rows = await self._link.query(
            _INSERT,
            [e.dedup_key for e in entries],
            [e.instance_name for e in entries],
            [e.event for e in entries],
            [payload_text(e.payload) for e in entries],
            [e.request_id for e in entries],
        )
        return {r["dedup_key"] for r in rows}

    @staticmethod
    def _settle(waiters: list[_Waiter], inserted: set[str], *, retried: bool) -> None:
        for waiter in waiters:
            waiter.settled = True
            waiter.inserted = waiter.entry.dedup_key in inserted
            waiter.duplicate = not waiter.inserted
            # On a retry, a row found present was probably committed by the attempt whose
            # answer the dead link lost: it is reported as a duplicate (still a 200) and its
            # owner rung anyway (the doorbell is idempotent).
            waiter.ring = waiter.inserted or retried

    def _refuse(self, waiter: _Waiter, exc: Exception) -> None:
        log.warning(
            "inbox refused an event of %s (SQLSTATE %s): %s",
            waiter.entry.instance_name,
            sqlstate(exc),
            exc,
        )
        waiter.settled = True
        waiter.refused = f"the database refused the event: {exc}"
        self.rejected += 1

    def _finish(self, batch: list[_Waiter], heads: dict[str, _Waiter]) -> None:
        for head in heads.values():
            if not head.settled and head.failed is None:
                head.failed = "the inbox writer stopped before storing the event"  # cancelled
        for waiter in batch:
            head = heads[waiter.entry.dedup_key]
            if waiter is not head:
                waiter.refused, waiter.failed = head.refused, head.failed
                waiter.duplicate = head.settled and head.refused is None
            waiter.done.set()
        self.batches += 1
        self.rows += sum(1 for w in heads.values() if w.inserted)
        names = {w.entry.instance_name for w in heads.values() if w.ring}
        if names:
            try:
                self._on_committed(names)
            except Exception:
                # A doorbell bug must not turn stored webhooks into 503s; the owner's
                # catch-up scan finds the rows.
                log.exception("inbox writer: on_committed failed for %s", sorted(names))
