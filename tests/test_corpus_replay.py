"""The replay corpus of recorded Evolution webhooks, posted to the live server.

1. In story order, one file at a time: after each, the database holds what it should and each
   socket got exactly its frames (the owner its own, an organization colleague `org.*` ones,
   a stranger nothing).
2. Every payload delivered 3 times, concurrently and in shuffled order: the same final
   contacts, conversations and messages as the in-order run, and receipts never go backwards.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    barrier,
    eventually,
    frames_until_pong,
    http,
    next_frame,
    user_token,
)

CORPUS = sorted((Path(__file__).parent / "corpus").glob("[0-9][0-9]_*.json"))
USER = uuid.UUID("3f6c1d2e-8a4b-4c5d-9e7f-0a1b2c3d4e5f")
NAME = f"user_{USER}"
ORG = uuid.UUID("0e5f3c1a-9b2d-4e6f-8a7b-1c2d3e4f5a6b")

# Frame types the owner's socket must get for each file (the colleague gets the org.* twins of
# status and message frames; a stranger gets nothing, ever).
EXPECTED: dict[str, list[str]] = {
    "02": ["status", "qrcode"], "03": ["qrcode"], "05": ["status", "notification"],
    "10": ["message"], "11": ["message"], "12": ["message"], "13": ["message"],
    "15": ["message"], "17": ["message"], "18": ["message"], "19": ["message"],
    "20": ["message"], "21": ["message"], "22": ["message"], "23": ["message"],
    "24": ["message"], "25": ["message"], "26": ["message_status"],
    "28": ["message_status"], "29": ["message_status"], "30": ["message_status"],
    "31": ["message_status"], "32": ["message_status", "message_update"],
    "33": ["message_status", "message_update"], "34": ["message_update"],
    "35": ["message_update"], "36": ["presence"], "37": ["presence"],
    "49": ["status", "notification"],
    "52": ["status", "qrcode"], "53": ["status", "notification"],
}  # fmt: skip
UNHANDLED = {"01", "38", "39", "40", "47", "48", "55"}


def _envelope(path: Path) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(path.read_text())["envelope"]
    return envelope


async def _setup(runner: ServiceRunner) -> Any:
    service = await runner.start()
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await instances.ensure_instance(pool, NAME, USER, ORG)
    return service


async def _settled(pool: Any) -> None:
    async def done() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL AND attempts < 5"
        )

    await eventually(done, timeout=20)


async def _snapshot(pool: Any) -> dict[str, Any]:
    """Contacts, conversations and messages by natural keys (ids and arrival-order fields,
    the raw payload of a duplicate and phone-side unread counters aside)."""
    messages = await pool.fetch(
        "SELECT wa_message_id, from_me, remote_jid, sender_jid, push_name, type, text, status,"
        " quoted_wa_message_id, sent_at, edited_at FROM messages WHERE instance_name = $1"
        " ORDER BY wa_message_id, from_me",
        NAME,
    )
    contacts = await pool.fetch(
        "SELECT jid, lid, phone_number, push_name, profile_pic_url FROM contacts"
        " WHERE instance_name = $1 ORDER BY jid",
        NAME,
    )
    conversations = await pool.fetch(
        "SELECT c.remote_jid, c.is_group, c.title, k.jid AS contact, c.last_message_at,"
        " c.deleted_at IS NOT NULL AS deleted FROM conversations c"
        " LEFT JOIN contacts k ON k.id = c.contact_id WHERE c.instance_name = $1"
        " ORDER BY c.remote_jid",
        NAME,
    )
    aliases = await pool.fetch(
        "SELECT lid, phone_jid FROM jid_aliases WHERE instance_name = $1 ORDER BY lid", NAME
    )
    patches = await pool.fetch(
        "SELECT wa_message_id, from_me, status FROM message_patches WHERE instance_name = $1"
        " ORDER BY 1, 2",
        NAME,
    )
    return {
        name: [dict(r.items()) for r in rows]
        for name, rows in (
            ("messages", messages),
            ("contacts", contacts),
            ("conversations", conversations),
            ("aliases", aliases),
            ("patches", patches),
        )
    }


async def test_replay_in_story_order(runner: ServiceRunner) -> None:
    service = await _setup(runner)
    ws_base = service.url.replace("http://", "ws://")
    tokens = [
        user_token(USER, ORG),
        user_token(uuid.uuid4(), ORG),
        user_token(uuid.uuid4(), uuid.uuid4()),
    ]
    async with (
        open_pool(runner.database_url, min_size=1, max_size=1) as pool,
        http(service.url) as client,
        open_websocket_url(f"{ws_base}/ws?token={tokens[0]}") as owner,
        open_websocket_url(f"{ws_base}/ws?token={tokens[1]}") as colleague,
        open_websocket_url(f"{ws_base}/ws?token={tokens[2]}") as stranger,
    ):
        for ws in (owner, colleague, stranger):
            assert (await next_frame(ws))["type"] == "snapshot"
        for path in CORPUS:
            number = path.name[:2]
            answer = await client.post(
                "/api/webhook/whatsapp", json=_envelope(path), headers=WEBHOOK_HEADERS
            )
            assert answer.json() == {"accepted": True, "duplicate": False}, path.name
            await _settled(pool)
            await barrier(service, NAME)
            expected = EXPECTED.get(number, [])
            org_twins = [f"org.{t}" for t in expected if t in ("status", "message")]
            # The owner is in the organization too: their own frames, each with its org twin.
            owner_expected = [
                x
                for t in expected
                for x in ([t, f"org.{t}"] if t in ("status", "message") else [t])
            ]
            got = [f["type"] for f in await frames_until_pong(owner)]
            assert got == owner_expected, path.name
            assert [f["type"] for f in await frames_until_pong(colleague)] == org_twins, path.name
            assert await frames_until_pong(stranger) == [], path.name

        outcomes = {
            r["event"]: r["outcome"]
            for r in await pool.fetch("SELECT event, outcome FROM webhook_inbox")
        }
        rows = await pool.fetch("SELECT payload->>'date_time' AS t, outcome FROM webhook_inbox")
        assert len(rows) == len(CORPUS)
        unhandled = {
            p.name[:2] for p in CORPUS if outcomes.get(_envelope(p)["event"]) == "unhandled"
        }
        assert unhandled == UNHANDLED
        assert {r["outcome"] for r in rows} == {"applied", "unhandled"}
        final = await _snapshot(pool)

    by_id = {(m["wa_message_id"], m["from_me"]): m for m in final["messages"]}
    assert len(final["messages"]) == 17  # 14 live (the API send and its echo are one) + 3 history
    sent = by_id[("3EB057177978D295E367", True)]
    assert sent["status"] == "played" and sent["push_name"] is None
    assert by_id[("3EB03D0F78E67CEFB2F5EF", False)]["status"] == "read"
    revoked = by_id[("3A0B0E1926CC7D010F92", False)]
    assert revoked["status"] == "deleted" and revoked["text"], "soft delete keeps the text"
    edited = by_id[("043AB9F194E19C8C66CDE9A251A03533", False)]
    assert edited["text"].endswith("É para o Thor.") and edited["edited_at"] is not None
    assert by_id[("C19D32E0F47C136CB3F0817992FC2EF6", False)]["quoted_wa_message_id"] == (
        "CBD90C09BB81BB8465287C921CF1E25B"
    )
    image = by_id[("3A0B0E1926CC7D010F92", False)]
    assert image["type"] == "image"
    reaction = by_id[("0F9C344F0F30F6EA74121B925ABBE13E", False)]
    assert (reaction["type"], reaction["text"]) == ("reaction", "👍")
    group_lid = by_id[("89CDF798E9710C4A3618C3C6815892DE", False)]
    assert group_lid["sender_jid"] == "5548991234567@s.whatsapp.net"
    # Juliana wrote first as @lid (with its phone alt), then by phone: one person.
    juliana = [c for c in final["contacts"] if c["phone_number"] == "5511934567812"]
    assert juliana == [
        {
            "jid": "5511934567812@s.whatsapp.net",
            "lid": "123456789012345@lid",
            "phone_number": "5511934567812",
            "push_name": "Juliana Ferreira",
            "profile_pic_url": juliana[0]["profile_pic_url"],
        }
    ]
    conversations = {c["remote_jid"]: c for c in final["conversations"]}
    assert "123456789012345@lid" not in conversations
    assert (
        sum(1 for m in final["messages"] if m["remote_jid"] == "5511934567812@s.whatsapp.net") == 2
    )
    assert conversations["198765432109876@lid"]["deleted"] is True
    assert conversations["120363041234567890@g.us"]["title"] == "Clientes VIP \u2013 Auzap 2026"
    gustavo = [c for c in final["contacts"] if c["jid"] == "5585992345678@s.whatsapp.net"]
    assert gustavo and gustavo[0]["lid"] == "345678901234567@lid"

    view = service.actors.supervisor.get(NAME).snapshot
    assert view.state.status.value == "disconnected" and view.state.phone_number is None


@pytest.mark.parametrize("seed", [20261129, 7])
async def test_triple_concurrent_shuffled_delivery_matches_once(
    runner: ServiceRunner, seed: int
) -> None:
    service = await _setup(runner)
    bodies = [_envelope(p) for p in CORPUS]
    async with (
        open_pool(runner.database_url, min_size=1, max_size=1) as pool,
        http(service.url) as client,
    ):
        for body in bodies:
            await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            await _settled(pool)
        once = await _snapshot(pool)
        await pool.execute(
            "TRUNCATE messages, contacts, conversations, jid_aliases,"
            " message_patches, webhook_inbox"
        )

        deliveries = bodies * 3
        random.Random(seed).shuffle(deliveries)
        codes: list[int] = []

        async def deliver(chunk: list[dict[str, Any]]) -> None:
            for body in chunk:
                answer = await client.post(
                    "/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS
                )
                codes.append(answer.status_code)

        async with trio.open_nursery() as nursery:
            for worker in range(8):
                nursery.start_soon(deliver, deliveries[worker::8])
        assert codes == [200] * len(deliveries)
        await _settled(pool)
        assert await pool.fetchval("SELECT count(*) FROM webhook_inbox") == len(bodies)
        thrice = await _snapshot(pool)

        # Receipts out of order: READ before DELIVERY_ACK leaves `read`.
        read_first = [
            b
            for b in bodies
            if b["event"] == "messages.update"
            and b["data"]["status"] in ("READ", "DELIVERY_ACK")
            and b["data"]["keyId"] == "3EB03D0F78E67CEFB2F5EF"
        ]
        assert [b["data"]["status"] for b in read_first] == ["READ"]
    for table in once:
        assert thrice[table] == once[table], table
    statuses = {m["wa_message_id"]: m["status"] for m in thrice["messages"]}
    assert statuses["3EB057177978D295E367"] == "played"


async def test_read_before_delivery_ack_stays_read(runner: ServiceRunner) -> None:
    service = await _setup(runner)
    bodies = {p.name[:2]: _envelope(p) for p in CORPUS}
    async with (
        open_pool(runner.database_url, min_size=1, max_size=1) as pool,
        http(service.url) as client,
    ):
        for number in ("29", "28", "27", "25", "26"):  # READ, DELIVERY_ACK, SERVER_ACK, send, echo
            await client.post("/api/webhook/whatsapp", json=bodies[number], headers=WEBHOOK_HEADERS)
            await _settled(pool)
        status = await pool.fetchval(
            "SELECT status FROM messages WHERE wa_message_id = '3EB057177978D295E367'"
        )
    assert status == "read"
