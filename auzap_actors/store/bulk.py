"""Many webhook batches applied with a fixed number of set-based statements.

The common traffic of a busy number is text messages and their receipts.  `BatchWriter` takes
one batch at a time with several round trips per message; here a run of "simple" batches (no
@lid to resolve, no alias, chat, group metadata, edit or deletion, not history sync) costs
three statements whatever its length (data-modifying CTEs): contacts with the conversations,
messages with their conversations' counters, and status advances with the receipts that must
wait for their message (plus a few when a patch waits for a new message: rare).  Each is a
round trip, and under load a round trip costs scheduler turns, not database time.  The result
is the one `BatchWriter` gives applying the same batches in order (tests/test_bulk_apply.py
compares the two); only the frames differ a little: a message whose receipt arrives in the same
run is announced once with its final status instead of once per step.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.payloads import STATUS_RANK, Batch, MessageRecord, is_lid, phone_of
from .conversations import timestamp_or_now
from .messages import Applied, BatchWriter
from .views import MESSAGE_COLUMNS, message_view

# The run's contacts (and chat partners), then its chats with their contact: one statement.
UPSERT_PEOPLE_AND_CHATS = (
    "WITH people AS (INSERT INTO contacts AS c (instance_name, jid, lid, phone_number,"
    " push_name, profile_pic_url) SELECT $1, u.jid, (SELECT a.lid FROM jid_aliases a"
    " WHERE a.instance_name = $1 AND a.phone_jid = u.jid LIMIT 1), u.phone, u.push_name, u.pic"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(jid, phone, push_name, pic)"
    " ON CONFLICT (instance_name, jid) DO UPDATE SET lid = coalesce(c.lid, EXCLUDED.lid),"
    " push_name = coalesce(EXCLUDED.push_name, c.push_name),"
    " profile_pic_url = coalesce(EXCLUDED.profile_pic_url, c.profile_pic_url),"
    " updated_at = now() RETURNING c.id, c.jid)"
    " INSERT INTO conversations AS v (instance_name, remote_jid, is_group, contact_id)"
    " SELECT $1, u.jid, u.is_group, CASE WHEN u.is_group THEN NULL"
    "  ELSE (SELECT p.id FROM people p WHERE p.jid = u.jid) END"
    " FROM unnest($6::text[], $7::bool[]) WITH ORDINALITY AS u(jid, is_group, ord) ORDER BY u.ord"
    " ON CONFLICT (instance_name, remote_jid) DO UPDATE SET"
    " contact_id = coalesce(v.contact_id, EXCLUDED.contact_id), updated_at = now()"
    " RETURNING v.id, v.remote_jid"
)
# New messages, their conversations' counters (from the rows inserted: a re-delivery bumps
# nothing), and whether a patch may wait for one of them: one statement.
INSERT_MESSAGES = (
    "WITH ins AS (INSERT INTO messages AS m (instance_name, conversation_id, remote_jid,"
    " wa_message_id, from_me, sender_jid, push_name, type, text, status, status_rank,"
    " quoted_wa_message_id, sent_at, raw)"
    " SELECT $1, u.conversation_id, u.remote_jid, u.wa, u.from_me, u.sender, u.push_name,"
    " u.type, u.text, u.status, u.rank, u.quoted, u.sent_at, u.raw::jsonb"
    " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[],"
    " $8::text[], $9::text[], $10::text[], $11::int2[], $12::text[], $13::timestamptz[],"
    " $14::text[]) WITH ORDINALITY AS u(conversation_id, remote_jid, wa, from_me, sender,"
    " push_name, type, text, status, rank, quoted, sent_at, raw, ord)"
    " ORDER BY u.ord"
    " ON CONFLICT (instance_name, wa_message_id, from_me) DO NOTHING"
    f" RETURNING {MESSAGE_COLUMNS}),"
    " bump AS (UPDATE conversations c SET last_message_at = greatest(c.last_message_at, u.at),"
    " unread_count = c.unread_count + u.unread, updated_at = now(),"
    " deleted_at = CASE WHEN c.deleted_at < u.at THEN NULL ELSE c.deleted_at END"
    " FROM (SELECT conversation_id AS id, max(sent_at) AS at,"
    "  count(*) FILTER (WHERE NOT from_me)::int AS unread FROM ins GROUP BY conversation_id)"
    " AS u WHERE c.id = u.id)"
    " SELECT ins.*, EXISTS (SELECT 1 FROM message_patches p WHERE p.instance_name = $1"
    "  AND p.wa_message_id = ins.wa_message_id) AS may_have_patch FROM ins"
)
# Each waiting patch goes to the first message stored that would have taken it one at a time
# (an edit waiting without a status may match either direction).
FIND_PATCHES_FOR = (
    "SELECT DISTINCT ON (p.wa_message_id, p.from_me) p.wa_message_id AS wa,"
    " n.from_me AS target_from_me, p.from_me, p.status, p.edited_text, p.edited_at"
    " FROM message_patches p"
    " JOIN unnest($2::text[], $3::bool[]) WITH ORDINALITY AS n(wa, from_me, ord)"
    " ON p.wa_message_id = n.wa AND (p.from_me = n.from_me OR p.status IS NULL)"
    " WHERE p.instance_name = $1 ORDER BY p.wa_message_id, p.from_me, n.ord"
)
DELETE_PATCHES = (
    "DELETE FROM message_patches p USING unnest($2::text[], $3::bool[]) AS k(wa, from_me)"
    " WHERE p.instance_name = $1 AND p.wa_message_id = k.wa AND p.from_me = k.from_me"
)
# Statuses forward (never back), and a receipt for a message not stored yet parked in
# `message_patches` for it: one statement (both read the messages as the earlier statements of
# the transaction left them).
ADVANCE_STATUSES = (
    "WITH r AS (SELECT * FROM unnest($2::text[], $3::bool[], $4::text[], $5::int2[])"
    "  AS r(wa, from_me, status, rank)),"
    " parked AS (INSERT INTO message_patches AS p (instance_name, wa_message_id, from_me,"
    " status, status_rank) SELECT $1, r.wa, r.from_me, r.status, r.rank FROM r"
    " WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.instance_name = $1"
    "  AND m.wa_message_id = r.wa AND m.from_me = r.from_me)"
    " ON CONFLICT (instance_name, wa_message_id, from_me) DO UPDATE SET"
    " status = CASE WHEN EXCLUDED.status_rank > p.status_rank THEN EXCLUDED.status"
    " ELSE p.status END, status_rank = greatest(p.status_rank, EXCLUDED.status_rank))"
    " UPDATE messages m SET status = r.status, status_rank = r.rank FROM r"
    " WHERE m.instance_name = $1 AND m.wa_message_id = r.wa AND m.from_me = r.from_me"
    " AND m.status_rank < r.rank RETURNING m.id, m.wa_message_id, m.from_me, m.status"
)

Key = tuple[str, bool]  # (WhatsApp id, from_me)


def is_simple(batch: Batch) -> bool:
    """Whether `apply_simple` can take this batch (else `BatchWriter` does)."""
    if not batch.live or batch.aliases or batch.chats or batch.groups:
        return False
    if batch.edits or batch.deleted_chats:
        return False
    if any(is_lid(c.jid) for c in batch.contacts):
        return False
    if any(is_lid(m.chat_jid) or is_lid(m.sender_jid) for m in batch.messages):
        return False
    return not any(is_lid(p.chat_jid) or is_lid(p.participant_jid) for p in batch.presences)


async def apply_simple(conn: Any, instance: str, batches: list[Batch]) -> Applied:
    """Apply simple batches, in order, inside the caller's transaction."""
    applied = Applied()
    for run in _runs(batches):
        await _apply_run(conn, instance, run, applied)
    return applied


def _runs(batches: list[Batch]) -> list[list[Batch]]:
    """Cut where a message comes after a receipt naming its id: a run inserts all its
    messages before it moves any status, which is the batches' own order everywhere else (a
    receipt that came first must wait in `message_patches`, as it did one batch at a time)."""
    runs: list[list[Batch]] = [[]]
    receipts: set[str] = set()
    for batch in batches:
        if any(m.wa_id in receipts for m in batch.messages):
            runs.append([])
            receipts = set()
        runs[-1].append(batch)
        receipts.update(r.wa_id for r in batch.receipts)
    return [run for run in runs if run]


async def _apply_run(conn: Any, instance: str, batches: list[Batch], applied: Applied) -> None:
    messages = [m for batch in batches for m in batch.messages]
    conversation_ids = await _upsert_people_and_chats(conn, instance, batches, messages)
    # Each receipt, and each message already stored, moves a status forward.
    advances: list[tuple[str, bool, str]] = []
    if messages:
        advances += await _store_messages(conn, instance, messages, conversation_ids, applied)
    advances += [(r.wa_id, r.from_me, r.status) for batch in batches for r in batch.receipts]
    if advances:
        await _advance(conn, instance, advances, applied)
    for batch in batches:
        for presence in batch.presences:
            applied.presences.append(
                {
                    "remote_jid": presence.chat_jid,
                    "participant": presence.participant_jid,
                    "presence": presence.presence,
                    "last_seen": presence.last_seen,
                }
            )


async def _upsert_people_and_chats(
    conn: Any, instance: str, batches: list[Batch], messages: list[MessageRecord]
) -> dict[str, Any]:
    """The batches' contacts and the people of their one-to-one chats (each named by the last
    push name and picture given, as one upsert after another would), then the messages'
    conversations linked to them: one statement.  Returns the conversation ids by chat."""
    people: dict[str, tuple[str | None, str | None]] = {}

    def see(jid: str, name: str | None, picture: str | None) -> None:
        old_name, old_picture = people.get(jid, (None, None))
        people[jid] = (
            name if name is not None else old_name,
            picture if picture is not None else old_picture,
        )

    for batch in batches:
        for contact in batch.contacts:
            see(contact.jid, contact.push_name, contact.profile_pic_url)
        for m in batch.messages:
            if not m.is_group:
                see(m.chat_jid, None if m.from_me else m.push_name, None)
    chats = {m.chat_jid: m.is_group for m in messages}
    if not people and not chats:
        return {}
    rows = await conn.fetch(
        UPSERT_PEOPLE_AND_CHATS,
        instance,
        list(people),
        [phone_of(jid) for jid in people],
        [name for name, _ in people.values()],
        [picture for _, picture in people.values()],
        list(chats),
        list(chats.values()),
    )
    return {r["remote_jid"]: r["id"] for r in rows}


async def _store_messages(
    conn: Any,
    instance: str,
    messages: list[MessageRecord],
    conversation_ids: dict[str, Any],
    applied: Applied,
) -> list[tuple[str, bool, str]]:
    """Insert the messages not stored yet; returns the status advances of the others."""
    first: dict[Key, MessageRecord] = {}
    advances: list[tuple[str, bool, str]] = []
    for m in messages:
        if (m.wa_id, m.from_me) in first:
            advances.append((m.wa_id, m.from_me, m.status))  # a re-delivery within the run
        else:
            first[(m.wa_id, m.from_me)] = m
    fresh = list(first.values())
    rows = await conn.fetch(
        INSERT_MESSAGES,
        instance,
        [conversation_ids[m.chat_jid] for m in fresh],
        [m.chat_jid for m in fresh],
        [m.wa_id for m in fresh],
        [m.from_me for m in fresh],
        [m.sender_jid for m in fresh],
        [m.push_name for m in fresh],
        [m.type for m in fresh],
        [m.text for m in fresh],
        [m.status for m in fresh],
        [STATUS_RANK[m.status] for m in fresh],
        [m.quoted_wa_id for m in fresh],
        [timestamp_or_now(m.timestamp) for m in fresh],
        [json.dumps(m.raw) for m in fresh],
    )
    inserted = sorted(rows, key=lambda r: r["seq"])
    stored = {(r["wa_message_id"], r["from_me"]) for r in inserted}
    # Stored before this run (a re-delivery, the echo of our own send): status forward.
    advances = [
        (m.wa_id, m.from_me, m.status) for m in fresh if (m.wa_id, m.from_me) not in stored
    ] + advances
    if not inserted:
        return advances
    if any(r["may_have_patch"] for r in inserted):
        keys = [(r["wa_message_id"], r["from_me"]) for r in inserted]
        patched = await _fold_patches(conn, instance, keys)
        if patched:
            fresh_rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ANY($1::uuid[])",
                [r["id"] for r in inserted if (r["wa_message_id"], r["from_me"]) in patched],
            )
            by_id = {r["id"]: r for r in fresh_rows}
            inserted = [by_id.get(r["id"], r) for r in inserted]
    applied.new_messages.extend(message_view(r) for r in inserted)
    return advances


async def _fold_patches(conn: Any, instance: str, keys: list[Key]) -> set[Key]:
    """Receipts and edits that arrived before their message (rare): folded in as
    `BatchWriter` does.  Returns the keys of the messages they changed."""
    rows = await conn.fetch(
        FIND_PATCHES_FOR, instance, [wa for wa, _ in keys], [fm for _, fm in keys]
    )
    if not rows:
        return set()
    await conn.execute(
        DELETE_PATCHES, instance, [r["wa"] for r in rows], [r["from_me"] for r in rows]
    )
    by_key: dict[Key, list[Any]] = {}
    for row in rows:
        by_key.setdefault((row["wa"], row["target_from_me"]), []).append(row)
    writer = BatchWriter(conn, instance)
    for (wa, from_me), patches in by_key.items():
        await writer.apply_patches(wa, from_me, patches)
    return set(by_key)


async def _advance(
    conn: Any, instance: str, advances: list[tuple[str, bool, str]], applied: Applied
) -> None:
    """Move statuses forward (never back); a receipt for a message not stored yet waits in
    `message_patches` for it."""
    best: dict[Key, str] = {}
    for wa, from_me, status in advances:
        current = best.get((wa, from_me))
        if current is None or STATUS_RANK[status] > STATUS_RANK[current]:
            best[(wa, from_me)] = status
    keys = list(best)
    moved = await conn.fetch(
        ADVANCE_STATUSES,
        instance,
        [wa for wa, _ in keys],
        [fm for _, fm in keys],
        [best[k] for k in keys],
        [STATUS_RANK[best[k]] for k in keys],
    )
    changed = {(r["wa_message_id"], r["from_me"]): r for r in moved}
    for key in keys:  # announced in the order the events came
        if key in changed:
            row = changed[key]
            applied.status_changes.append(
                {"message_id": str(row["id"]), "wa_message_id": key[0], "status": row["status"]}
            )
