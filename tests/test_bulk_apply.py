"""The set-based apply (`store/bulk.py`) leaves exactly the rows that `BatchWriter` leaves
applying the same batches one by one: random runs of messages (re-deliveries, both directions,
groups), receipts before and after their message, presences, on top of earlier state (stored
messages, waiting receipts and edits, a deleted chat), compared table by table."""

from __future__ import annotations

import random
from typing import Any

import pytest

from auzap_actors.core.payloads import (
    STATUS_RANK,
    Batch,
    ContactRecord,
    Edit,
    MessageRecord,
    Presence,
    Receipt,
)
from auzap_actors.store.bulk import apply_simple, is_simple
from auzap_actors.store.db import open_pool
from auzap_actors.store.messages import BatchWriter

CHATS = [f"55119{n:08d}@s.whatsapp.net" for n in range(5)]
GROUP = "120363025246125486@g.us"
STATUSES = list(STATUS_RANK)


def _message(rng: random.Random) -> MessageRecord:
    in_group = rng.random() < 0.2
    from_me = rng.random() < 0.3
    chat = GROUP if in_group else rng.choice(CHATS)
    return MessageRecord(
        wa_id=f"3EB0{rng.randrange(30):04d}",
        chat_jid=chat,
        is_group=in_group,
        from_me=from_me,
        sender_jid=rng.choice(CHATS) if in_group and not from_me else None,
        push_name=rng.choice([None, "Ana", "Bruno", "Carla"]),
        type="text",
        text=f"texto {rng.randrange(1000)}",
        quoted_wa_id=None,
        status=rng.choice(STATUSES),
        timestamp=1_795_000_000 + rng.randrange(-5000, 5000),
        raw={"n": rng.randrange(10**6)},
    )


def _batch(rng: random.Random) -> Batch:
    return Batch(
        contacts=tuple(
            ContactRecord(
                rng.choice(CHATS),
                push_name=rng.choice([None, "Ana", "Dora"]),
                profile_pic_url=rng.choice([None, "https://pps.whatsapp.net/a.jpg", ""]),
            )
            for _ in range(rng.choice([0, 0, 1]))
        ),
        messages=tuple(_message(rng) for _ in range(rng.choice([0, 1, 1, 1, 2]))),
        receipts=tuple(
            Receipt(f"3EB0{rng.randrange(30):04d}", rng.random() < 0.5, rng.choice(STATUSES))
            for _ in range(rng.choice([0, 0, 1, 2]))
        ),
        presences=tuple(
            Presence(rng.choice(CHATS), rng.choice(CHATS), "composing", None)
            for _ in range(rng.choice([0, 0, 0, 1]))
        ),
    )


def _earlier_state(rng: random.Random) -> list[Batch]:
    """Applied one by one on both sides first: stored messages, waiting receipts and edits, a
    deleted chat."""
    batches = [_batch(rng) for _ in range(8)]
    batches.append(
        Batch(
            edits=tuple(
                Edit(
                    f"3EB0{rng.randrange(30):04d}", rng.random() < 0.5, "editado", 1_795_000_000_000
                )
                for _ in range(3)
            ),
            deleted_chats=(CHATS[0],),
        )
    )
    return batches


async def _snapshot(conn: Any, instance: str) -> dict[str, Any]:
    async def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in await conn.fetch(sql, instance)]

    return {
        "contacts": await rows(
            "SELECT jid, lid, phone_number, push_name, profile_pic_url FROM contacts"
            " WHERE instance_name = $1 ORDER BY jid"
        ),
        "conversations": await rows(
            "SELECT v.remote_jid, v.is_group, v.title, c.jid, v.last_message_at,"
            " v.unread_count, v.deleted_at IS NULL FROM conversations v"
            " LEFT JOIN contacts c ON c.id = v.contact_id"
            " WHERE v.instance_name = $1 ORDER BY v.remote_jid"
        ),
        "messages": await rows(
            "SELECT m.wa_message_id, m.from_me, m.remote_jid, v.remote_jid, m.sender_jid,"
            " m.push_name, m.type, m.text, m.status, m.status_rank, m.sent_at,"
            " m.edited_at, m.raw FROM messages m JOIN conversations v"
            " ON v.id = m.conversation_id WHERE m.instance_name = $1 ORDER BY m.seq"
        ),
        "patches": await rows(
            "SELECT wa_message_id, from_me, status, status_rank, edited_text, edited_at"
            " FROM message_patches WHERE instance_name = $1 ORDER BY wa_message_id, from_me"
        ),
    }


@pytest.mark.parametrize("seed", range(12))
async def test_set_based_apply_equals_one_batch_at_a_time(database_url: str, seed: int) -> None:
    rng = random.Random(seed)
    earlier = _earlier_state(rng)
    run = [_batch(rng) for _ in range(rng.choice([5, 20, 60]))]
    assert all(is_simple(b) for b in run)
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            for name in ("user_one", "user_bulk"):
                async with conn.transaction():
                    for batch in earlier:
                        await BatchWriter(conn, name).apply(batch)
            async with conn.transaction():
                one_by_one = [await BatchWriter(conn, "user_one").apply(b) for b in run]
            async with conn.transaction():
                bulk = await apply_simple(conn, "user_bulk", run)
            expected = await _snapshot(conn, "user_one")
            got = await _snapshot(conn, "user_bulk")
            final_status = {
                str(r["id"]): r["status"]
                for r in await conn.fetch(
                    "SELECT id, status FROM messages WHERE instance_name = 'user_bulk'"
                )
            }
    for table in expected:
        assert got[table] == expected[table], table
    assert [m["wa_message_id"] for m in bulk.new_messages] == [
        m["wa_message_id"] for a in one_by_one for m in a.new_messages
    ]
    assert bulk.presences == [p for a in one_by_one for p in a.presences]
    # The last status announced for a message is the one it has.
    last: dict[str, str] = {}
    for change in bulk.status_changes:
        last[change["message_id"]] = change["status"]
    assert {k: final_status[k] for k in last} == last


def test_what_the_set_based_path_leaves_to_batch_writer() -> None:
    lid = "123456789012345@lid"
    plain = Batch(receipts=(Receipt("3EB0", True, "read"),))
    assert is_simple(plain)
    assert not is_simple(Batch(live=False))
    assert not is_simple(Batch(edits=(Edit("3EB0", True, "x", None),)))
    assert not is_simple(Batch(deleted_chats=(CHATS[0],)))
    message = _message(random.Random(1))
    assert is_simple(Batch(messages=(message,)))
    lid_message = MessageRecord(**{**_fields(message), "chat_jid": lid, "is_group": False})
    assert not is_simple(Batch(messages=(lid_message,)))
    assert not is_simple(Batch(presences=(Presence(lid, lid, "composing", None),)))


def _fields(record: MessageRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
