"""What an instance actor does with messages, contacts and chats: store what a webhook (or
our own send) says, then push it to the right sockets.

Stored rows and the inbox row that carried them commit in one transaction; frames are
published only after the commit, so a browser never hears of a message that is not stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..core.payloads import Batch, parse_message
from ..core.views import InstanceSnapshot
from ..core.webhook import WebhookError
from ..store import inbox
from ..store import messages as messages_store
from ..store.bulk import apply_simple, is_simple
from ..store.db import run_on_connection
from ..store.messages import Applied, BatchWriter
from .deps import ActorDeps

# Runs inside the batch's transaction, after the batch is applied (auto-reply decisions).
WithinBatch = Callable[[Any, Applied], Awaitable[object]]


async def apply_batch(
    deps: ActorDeps,
    snapshot: InstanceSnapshot,
    batch: Batch,
    *,
    inbox_row: int | None,
    within: WithinBatch | None = None,
) -> Applied:
    """Store a batch (and mark its inbox row) in one transaction, then publish.  `within`
    runs in that transaction, so what it writes commits with the batch or not at all."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            applied = await BatchWriter(conn, snapshot.instance_name).apply(batch)
            await applied.load_updates(conn, snapshot.instance_name)
            if within is not None:
                await within(conn, applied)
            if inbox_row is not None:
                await inbox.mark_done(conn, inbox_row, "applied")
    publish(deps, snapshot, applied)
    return applied


# The rows stored, and those settled without storing anything: (row id, outcome, error).
Settled = list[tuple[int, str, str | None]]
# Picks, among fetched rows, the leading ones applied together: their batches and settled rows
# (none when the first row must go through the actor's step).
Take = Callable[[list[inbox.InboxRow]], tuple[list[tuple[int, Batch]], Settled]]


async def apply_rows(
    deps: ActorDeps,
    snapshot: InstanceSnapshot,
    batches: list[tuple[int, Batch]],
    settled: Settled,
    *,
    within: WithinBatch | None = None,
) -> None:
    """Store many inbox rows' batches and settle every row (those and `settled`, rows that
    store nothing: invalid, unhandled) in ONE transaction, then publish in row order.

    One commit per group instead of per row: the apply rate is bound by round trips and
    commits, not by the work of each event.  Any error rolls the whole group back; the caller
    then splits the group, so a bad row is still isolated and retried alone.  `within` runs
    once in that transaction, after every batch, with all they changed.

    The whole unit (acquire, the transaction, release) crosses the trio->asyncio bridge once
    (`run_on_connection`): `within` runs on the asyncio side and must await only the
    connection it is given."""
    name = snapshot.instance_name
    results = await run_on_connection(
        deps.pool, lambda conn: _store_rows(conn, name, batches, settled, within)
    )
    for applied in results:
        publish(deps, snapshot, applied)


async def fetch_and_apply(
    deps: ActorDeps,
    snapshot: InstanceSnapshot,
    after_id: int,
    limit: int,
    take: Take,
    *,
    within: WithinBatch | None = None,
) -> list[inbox.InboxRow]:
    """Fetch the instance's next pending rows (after `after_id`, at most `limit`) and apply the
    leading ones `take` picks as `apply_rows` does, on one connection in one bridge crossing:
    an instance with a few rows pending costs one unit of work, not a fetch and then a group.
    `take` runs on the asyncio side (pure work).  Returns the rows fetched; an error of the
    group rolls it back and escapes (the caller fetches again and splits)."""
    name = snapshot.instance_name

    async def unit(conn: Any) -> tuple[list[inbox.InboxRow], list[Applied]]:
        rows = await inbox.fetch_pending(conn, name, after_id, limit)
        batches, settled = take(rows)
        if not batches and not settled:
            return rows, []
        return rows, await _store_rows(conn, name, batches, settled, within)

    rows, results = await run_on_connection(deps.pool, unit)
    for applied in results:
        publish(deps, snapshot, applied)
    return rows


async def fetch_pending(
    deps: ActorDeps, instance_name: str, after_id: int, limit: int
) -> list[inbox.InboxRow]:
    """The instance's next pending rows, in one bridge crossing."""
    return await run_on_connection(
        deps.pool, lambda conn: inbox.fetch_pending(conn, instance_name, after_id, limit)
    )


async def _store_rows(
    conn: Any,
    name: str,
    batches: list[tuple[int, Batch]],
    settled: Settled,
    within: WithinBatch | None,
) -> list[Applied]:
    results: list[Applied] = []
    async with conn.transaction():
        run: list[Batch] = []  # consecutive simple batches: set-based statements
        for _, batch in batches:
            if is_simple(batch):
                run.append(batch)
                continue
            if run:
                results.append(await apply_simple(conn, name, run))
                run = []
            results.append(await BatchWriter(conn, name).apply(batch))
        if run:
            results.append(await apply_simple(conn, name, run))
        for applied in results:
            await applied.load_updates(conn, name)
        if within is not None:
            await within(conn, _merged(results))
        await inbox.mark_many_done(
            conn, [(row_id, "applied", None) for row_id, _ in batches] + settled
        )
    return results


def _merged(results: list[Applied]) -> Applied:
    merged = Applied()
    for applied in results:
        merged.new_messages += applied.new_messages
        merged.status_changes += applied.status_changes
        merged.presences += applied.presences
        merged.edited += applied.edited
        merged.updated_messages += applied.updated_messages
    return merged


def publish(deps: ActorDeps, snap: InstanceSnapshot, applied: Applied) -> None:
    hub = deps.hub
    name = snap.instance_name  # named in the frames when a user may have several instances
    for message in applied.new_messages:
        frame = deps.frame(message, name)
        hub.publish_user(snap.user_id, "message", frame)
        hub.publish_org(snap.organization_id, "org.message", frame)
    for change in applied.status_changes:
        hub.publish_user(snap.user_id, "message_status", deps.frame(change, name))
    for message in applied.updated_messages:  # after an edit or a delete
        hub.publish_user(snap.user_id, "message_update", deps.frame(message, name))
    for presence in applied.presences:
        hub.publish_user(snap.user_id, "presence", deps.frame(presence, name))


async def send_text(
    deps: ActorDeps, snapshot: InstanceSnapshot, to: str, text: str
) -> dict[str, Any]:
    """Send through Evolution and store the message `pending`."""
    name = snapshot.instance_name
    sent = await deps.evolution.send_text(name, to, text)
    record, aliases = parse_message(sent)
    if record is None:
        raise WebhookError("invalid_data", "Evolution answered sendText without a message.")
    applied = await apply_batch(
        deps, snapshot, Batch(aliases=aliases, messages=(record,)), inbox_row=None
    )
    if applied.new_messages:
        return applied.new_messages[0]
    # Already stored (the send.message webhook won the race): answer with the stored row.
    async with deps.pool.acquire() as conn:
        view = await messages_store.find_message(conn, name, record.wa_id, True)
    assert view is not None
    return view
