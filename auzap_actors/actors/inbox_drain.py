"""The instance actor's webhook inbox: its stored rows applied in arrival order, exactly once.

Consecutive rows that only store records are applied as one group in one transaction (the
set-based path of `store/bulk.py` where it can); a state change goes through the actor's step
on its own.  A row that fails is retried in place, then settled as failed; a transient
database error escapes with the rows still pending (the supervisor waits for the database).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from ..core.instance import Input
from ..core.payloads import Batch
from ..core.routing import Records, Route, StateChange, Unhandled, classify
from ..core.views import InstanceSnapshot
from ..core.webhook import WebhookError
from ..observability.logs import bind_correlation
from ..store import inbox
from ..store.faults import is_transient
from ..store.messages import Applied
from . import messaging
from .deps import ActorDeps
from .mailbox import Mailbox
from .messaging import Settled

log = logging.getLogger(__name__)

Routed = list[tuple[inbox.InboxRow, Route | WebhookError]]  # fetched rows, each with its route

# A failing inbox row is retried after 0.1, 0.2, 0.4, 0.8 s (MAX_ATTEMPTS in all): the rows
# behind it wait at most that long.
ROW_RETRY_S = 0.1
# Rows fetched, and at most applied in one transaction, at a time.  A busy instance's backlog
# is applied in groups this large (group commit: the fixed cost of a group, a few statements
# and one commit, is shared by every row); an instance that keeps up gets what is pending.
GROUP_ROWS = 1000


class DrainHost(Protocol):
    """What the drain needs of its actor."""

    name: str
    deps: ActorDeps
    mailbox: Mailbox

    @property
    def snapshot(self) -> InstanceSnapshot: ...

    async def feed(self, item: Input, *, inbox_row: int | None = None) -> None: ...

    # Runs inside a group's transaction, on the asyncio side of the bridge
    # (`store.db.run_on_connection`): it may await only `conn`.
    async def decide_replies(self, conn: Any, applied: Applied) -> bool: ...

    def wake_composer(self) -> None: ...


class InboxDrain:
    def __init__(self, host: DrainHost) -> None:
        self.host = host
        self.cursor = 0  # the last row applied (or settled) by this actor
        self._decided = False  # the last transaction recorded an auto-reply decision
        # The last turn fetched a full group: rows may still be pending (see `drain_turn`).
        self.behind = False

    async def _decide(self, conn: Any, applied: Applied) -> None:
        if await self.host.decide_replies(conn, applied):
            self._decided = True

    async def drain(self) -> None:
        """Apply this instance's stored webhook rows in arrival order.

        Consecutive rows that only store records (messages, receipts, contacts, ...) or store
        nothing (invalid, unhandled) are applied as one group in one transaction; a state
        change goes through the step on its own, after the group before it.  Rows are read
        with the group that follows (one trip across the trio->asyncio bridge per round), and
        the drain ends at a round that found less than a full group: a row stored since then
        rang the doorbell again (each turn answers it before its read)."""
        await self.drain_turn()
        while self.behind:
            await self.drain_turn()

    async def drain_turn(self) -> None:
        """Apply at most one round (GROUP_ROWS rows) of the stored rows, leaving `behind` set
        when more may be pending.  The actor takes its queued letters between turns: a hot
        instance whose backlog never clears still answers its user's calls within a turn,
        instead of after the whole backlog (or never)."""
        self.host.mailbox.answer_doorbell()
        self.behind = await self._drain_round()

    async def _drain_round(self) -> bool:
        """Fetch the next rows, applying their leading group in the same unit of work, then
        the rest in order.  True when more rows may be pending (the fetch was full)."""
        taken: list[_Group] = []

        def take(rows: list[inbox.InboxRow]) -> tuple[list[tuple[int, Batch]], Settled]:
            group = _Group.leading([(row, _route(row)) for row in rows])
            taken.append(group)
            return group.batches, group.settled

        started = trio.current_time()
        self._decided = False
        try:
            rows = await messaging.fetch_and_apply(
                self.host.deps,
                self.host.snapshot,
                self.cursor,
                GROUP_ROWS,
                take,
                within=self._decide,
            )
        except Exception as exc:
            if is_transient(exc):
                raise
            # The leading group failed (rolled back): read again, and split it below.
            rows = await messaging.fetch_pending(
                self.host.deps, self.host.name, self.cursor, GROUP_ROWS
            )
            routed = [(row, _route(row)) for row in rows]
        else:
            group = taken[-1]
            if group.routed:
                self._committed(group, started)
            routed = group.rest
        await self._apply_routed(routed)
        return len(rows) >= GROUP_ROWS

    async def _apply_routed(self, routed: Routed) -> None:
        """Apply fetched rows in order: a state change alone through the step, the rows
        between them as groups."""
        while routed:
            row, route = routed[0]
            if isinstance(route, StateChange):
                await self._apply_row(row)
                routed = routed[1:]
                continue
            group = _Group.leading(routed)
            await self._apply_group(group)
            routed = group.rest

    async def _apply_group(self, group: _Group) -> None:
        """Apply rows that go together in one transaction; split when it fails."""
        started = trio.current_time()
        self._decided = False
        try:
            await messaging.apply_rows(
                self.host.deps,
                self.host.snapshot,
                group.batches,
                group.settled,
                within=self._decide,
            )
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._split(group.routed)
            return
        self._committed(group, started)

    def _committed(self, group: _Group, started: float) -> None:
        self.cursor = group.routed[-1][0].id
        for (row, _), outcome in zip(group.routed, group.outcomes, strict=True):
            self._settled(row, outcome, started)
        if self._decided:
            self.host.wake_composer()

    async def _split(self, group: Routed) -> None:
        """Something in the group fails: its halves are applied as groups of their own, down
        to the bad row, which is retried and settled alone (its error is logged there).  A
        group of thousands costs a few dozen transactions to isolate one bad row, not one per
        row."""
        if len(group) == 1:
            await self._apply_row(group[0][0])
            return
        log.info("a group of %d rows of %s failed; applying it in halves", len(group),
                 self.host.name)  # fmt: skip
        middle = len(group) // 2
        for half in (group[:middle], group[middle:]):
            await self._apply_group(_Group.leading(half))

    async def _apply_row(self, row: inbox.InboxRow) -> None:
        """Apply one row alone, logged under the id of the request that stored it."""
        self.cursor = row.id
        with bind_correlation(row.request_id or f"inbox-{row.id}"):
            await self._apply_row_retried(row)

    async def _apply_row_retried(self, row: inbox.InboxRow) -> None:
        """Apply one row, retried in place (the rows behind it wait) until it is applied or
        settled as failed.  A transient database error escapes: the row stays pending."""
        attempts: int | None = row.attempts
        started = trio.current_time()
        while True:
            try:
                outcome = await self._apply_row_once(row)
                self._settled(row, outcome, started)
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                # A bug, or a value the database refuses: recorded, retried a few times, then
                # settled as failed so that it cannot block the rows behind it forever.
                error_id = uuid.uuid4().hex[:12]
                log.exception(
                    "error %s applying inbox row %s of %s", error_id, row.id, self.host.name
                )
                attempts = await inbox.record_failure(
                    self.host.deps.pool, row.id, f"[{error_id}] {exc!r}"
                )
                if attempts is None:
                    return  # applied before the error (a failing effect): nothing to retry
                if attempts >= inbox.MAX_ATTEMPTS:
                    self._settled(row, "failed", started)
                    log.error(
                        "inbox row %s of %s failed %d times; settled as failed (last error %s)",
                        row.id,
                        self.host.name,
                        attempts,
                        error_id,
                    )
                    return
                await trio.sleep(ROW_RETRY_S * 2 ** (attempts - 1))

    def _settled(self, row: inbox.InboxRow, outcome: str, started: float) -> None:
        # Latency: from the row's commit (the database's clock) to now (ours).
        latency = None if row.received_at is None else time.time() - row.received_at
        duration = trio.current_time() - started
        self.host.deps.metrics.inbox_row_settled(outcome, latency_s=latency, duration_s=duration)

    async def _apply_row_once(self, row: inbox.InboxRow) -> str:
        """Apply one row; returns how it was settled."""
        pool = self.host.deps.pool
        route = _route(row)
        match route:
            case Records(batch=batch):
                self._decided = False
                await messaging.apply_batch(
                    self.host.deps, self.host.snapshot, batch, inbox_row=row.id, within=self._decide
                )
                if self._decided:
                    self.host.wake_composer()
            case StateChange(event=event):
                await self.host.feed(event, inbox_row=row.id)
            case Unhandled():
                await inbox.mark_done(pool, row.id, "unhandled")
                return "unhandled"
            case WebhookError() as exc:
                await inbox.mark_done(pool, row.id, "invalid", exc.message)
                return "invalid"
        return "applied"


@dataclass
class _Group:
    """The leading rows of a fetch that are applied together (up to the first state change),
    with what their transaction writes, and the rows after them."""

    routed: Routed
    rest: Routed
    batches: list[tuple[int, Batch]] = field(default_factory=list)
    settled: Settled = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # each row's, for the metrics

    @classmethod
    def leading(cls, routed: Routed) -> _Group:
        end = 0
        while end < len(routed) and not isinstance(routed[end][1], StateChange):
            end += 1
        group = cls(routed[:end], routed[end:])
        for row, route in group.routed:
            if isinstance(route, Records):
                group.batches.append((row.id, route.batch))
                group.outcomes.append("applied")
            elif isinstance(route, WebhookError):
                group.settled.append((row.id, "invalid", route.message))
                group.outcomes.append("invalid")
            else:
                group.settled.append((row.id, "unhandled", None))
                group.outcomes.append("unhandled")
        return group


def _route(row: inbox.InboxRow) -> Route | WebhookError:
    """What a stored row is (parsing is pure and cheap enough to redo on a retry)."""
    data = row.payload.get("data") if isinstance(row.payload, dict) else None
    try:
        return classify(row.event, data)
    except WebhookError as exc:
        return exc
