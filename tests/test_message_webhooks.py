"""Message webhooks into the store, posted straight to the live server: concurrent duplicate
deliveries make one row and one frame, arbitrary bodies are never answered 5xx, one contact per
person across @lid and phone jids, paginating what was stored, and isolation between users."""

from __future__ import annotations

import json
import uuid
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from auzap_actors.store.db import open_pool

from . import strategies
from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    barrier,
    eventually,
    fetch_rows,
    frames_until_pong,
    http,
    next_frame,
    user_token,
    wait_frame,
)
from .payloads import envelope, text_message


async def _instance(client: Any, user: uuid.UUID) -> str:
    answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
    assert answer.status_code == 200, answer.text
    return f"user_{user}"


async def _settled(database_url: str) -> None:
    """Every stored webhook has been applied (or given up on)."""
    async with open_pool(database_url, min_size=1, max_size=1) as pool:

        async def done() -> bool:
            return not await pool.fetchval(
                "SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL"
                " AND coalesce(outcome, '') NOT IN ('orphan') AND attempts < 5"
            )

        await eventually(done, timeout=20)


async def test_hundred_concurrent_deliveries_one_row_one_frame(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with http(service.url) as client, open_websocket_url(ws_url) as ws:
        name = await _instance(client, user)
        await next_frame(ws)
        body = envelope(
            "messages.upsert",
            name,
            text_message("3EB0C0FFEE0000000001", "5511912345678@s.whatsapp.net", "Oi"),
        )
        codes: list[int] = []

        async def deliver() -> None:
            codes.append(
                (
                    await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
                ).status_code
            )

        writer = service.actors.inbox_writer
        batches_before = writer.batches
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(deliver)
        assert codes == [200] * 100
        # Group commit: concurrent deliveries share INSERT statements.
        batches = writer.batches - batches_before
        print(f"100 concurrent deliveries stored in {batches} INSERT statements")
        assert batches < 100
        await _settled(runner.database_url)
        frames: list[dict[str, Any]] = []
        await wait_frame(ws, lambda f: f["type"] == "message", seen=frames)
        await barrier(service, name)
        frames.extend(await frames_until_pong(ws))
        assert not [f for f in frames if f["type"] == "message"], "exactly one message frame"
    rows = await fetch_rows(
        runner.database_url,
        "SELECT count(*) AS n FROM messages WHERE wa_message_id = $1",
        "3EB0C0FFEE0000000001",
    )
    assert rows == [{"n": 1}]


async def test_an_edit_and_a_delete_reach_the_open_socket_as_message_update(
    runner: ServiceRunner,
) -> None:
    """CONTRACT §4: `message_update` carries the MessageView after an edit (its new text) and
    after a delete (status "deleted"), so an open conversation shows it without reloading."""
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    chat = "5511912345670@s.whatsapp.net"

    async def post(event: str, data: Any) -> None:
        answer = await client.post(
            "/api/webhook/whatsapp", json=envelope(event, name, data), headers=WEBHOOK_HEADERS
        )
        assert answer.status_code == 200, answer.text

    async with http(service.url) as client, open_websocket_url(ws_url) as ws:
        name = await _instance(client, user)
        await next_frame(ws)
        await post("messages.upsert", text_message("3EB0ED17000000000001", chat, "Chego às 9h"))
        stored = await wait_frame(ws, lambda f: f["type"] == "message")
        message_id = stored["data"]["id"]

        edit = {
            "key": {"remoteJid": chat, "fromMe": False, "id": "3EB0ED17000000000001"},
            "type": 14,
            "editedMessage": {"conversation": "Chego às 10h"},
            "timestampMs": 1_795_000_060_000,
        }
        await post("messages.edited", edit)
        edited = await wait_frame(ws, lambda f: f["type"] == "message_update")
        assert edited["data"]["id"] == message_id
        assert edited["data"]["text"] == "Chego às 10h"
        assert edited["data"]["wa_message_id"] == "3EB0ED17000000000001"

        gone = {"remoteJid": chat, "fromMe": False, "id": "3EB0ED17000000000001"}
        await post("messages.delete", {**gone, "status": "DELETED"})
        seen: list[dict[str, Any]] = []
        deleted = await wait_frame(ws, lambda f: f["type"] == "message_update", seen=seen)
        assert deleted["data"]["id"] == message_id and deleted["data"]["status"] == "deleted"
        # The receipt-shaped frame still comes too, before it (older clients listen to it).
        assert any(
            f["type"] == "message_status" and f["data"]["status"] == "deleted" for f in seen
        ), seen

        # An edit of a message never stored is kept for later and tells no socket anything.
        stray = {**edit, "key": {**edit["key"], "id": "3EB0ED17000000000099"}}
        await post("messages.edited", stray)
        await barrier(service, name)
        later = await frames_until_pong(ws)
        assert not [f for f in later if f["type"] == "message_update"], later
    listed = await fetch_rows(
        runner.database_url,
        "SELECT text, status FROM messages WHERE wa_message_id = $1",
        "3EB0ED17000000000001",
    )
    assert listed == [{"text": "Chego às 10h", "status": "deleted"}]


async def test_lid_then_phone_is_one_contact_and_one_conversation(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    async with http(service.url) as client:
        name = await _instance(client, user)
        lid, phone = "123456789012345@lid", "5511923456789@s.whatsapp.net"
        first = text_message(
            "3EB0AAAA000000000001",
            lid,
            "primeira",
            remote_jid_alt=phone,
            push_name="Carla Lima",
            timestamp=1_795_000_100,
        )
        second = text_message(
            "3EB0AAAA000000000002", phone, "segunda", push_name="Carla", timestamp=1_795_000_200
        )
        # A LID-only message from someone else, then the pair learned later from a group.
        other_lid = "987654321098765@lid"
        third = text_message(
            "3EB0AAAA000000000003",
            other_lid,
            "sem número",
            push_name="Davi",
            timestamp=1_795_000_300,
        )
        for data in (first, second, third):
            answer = await client.post(
                "/api/webhook/whatsapp",
                headers=WEBHOOK_HEADERS,
                json=envelope("messages.upsert", name, data),
            )
            assert answer.status_code == 200
        await _settled(runner.database_url)
        contacts = await fetch_rows(
            runner.database_url,
            "SELECT jid, lid, phone_number, push_name FROM contacts"
            " WHERE instance_name = $1 ORDER BY jid",
            name,
        )
        assert contacts == [
            {"jid": phone, "lid": lid, "phone_number": "5511923456789", "push_name": "Carla"},
            {"jid": other_lid, "lid": other_lid, "phone_number": None, "push_name": "Davi"},
        ]
        participants = {
            "id": "120363041234567890@g.us",
            "author": phone,
            "action": "add",
            "participants": [other_lid],
            "participantsData": [
                {"jid": other_lid, "phoneNumber": "5511934567890", "name": "Davi Rocha"}
            ],
        }
        await client.post(
            "/api/webhook/whatsapp",
            headers=WEBHOOK_HEADERS,
            json=envelope("group-participants.update", name, participants),
        )
        await _settled(runner.database_url)
        conversations = await fetch_rows(
            runner.database_url,
            "SELECT c.remote_jid, count(m.id) AS messages FROM conversations c"
            " LEFT JOIN messages m ON m.conversation_id = c.id WHERE c.instance_name = $1"
            " GROUP BY c.remote_jid ORDER BY c.remote_jid",
            name,
        )
        assert conversations == [
            {"remote_jid": "120363041234567890@g.us", "messages": 0},
            {"remote_jid": phone, "messages": 2},
            {"remote_jid": "5511934567890@s.whatsapp.net", "messages": 1},
        ]
        contacts = await fetch_rows(
            runner.database_url,
            "SELECT jid, lid FROM contacts WHERE instance_name = $1 ORDER BY jid",
            name,
        )
        assert contacts == [
            {"jid": phone, "lid": lid},
            {"jid": "5511934567890@s.whatsapp.net", "lid": other_lid},
        ]


async def test_pagination_through_a_thousand_messages_and_isolation(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    async with http(service.url) as client:
        name = await _instance(client, owner)
        chat = "5511945678901@s.whatsapp.net"
        # History sync: 10 webhooks of 100 messages; every 7 share a timestamp (ties).
        for batch in range(10):
            items = [
                text_message(
                    f"3EB0{n:016X}",
                    chat,
                    f"m{n}",
                    timestamp=1_795_000_000 + n // 7,
                    from_me=n % 3 == 0,
                )
                for n in range(batch * 100, batch * 100 + 100)
            ]
            body = envelope("messages.set", name, items)
            body["isLatest"], body["progress"] = batch == 9, (batch + 1) * 10
            assert (
                await client.post("/api/webhook/whatsapp", headers=WEBHOOK_HEADERS, json=body)
            ).status_code == 200
        await _settled(runner.database_url)
        token = user_token(owner)
        conversations = (
            await client.get("/api/whatsapp/conversations", headers=auth(token))
        ).json()["conversations"]
        assert len(conversations) == 1
        conversation_id = conversations[0]["id"]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            url = f"/api/whatsapp/conversations/{conversation_id}/messages?limit=37"
            if cursor:
                url += f"&before={cursor}"
            page = (await client.get(url, headers=auth(token))).json()
            seen.extend(m["text"] for m in page["messages"])
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert pages == 28  # ceil(1000 / 37)
        assert len(seen) == 1000 and len(set(seen)) == 1000
        # Newest first: by timestamp, and by arrival within one second.
        assert seen == [f"m{n}" for n in range(999, -1, -1)]

        other = user_token(stranger)
        foreign = await client.get(
            f"/api/whatsapp/conversations/{conversation_id}/messages", headers=auth(other)
        )
        assert foreign.status_code == 404
        assert (await client.get("/api/whatsapp/conversations", headers=auth(other))).json() == {
            "conversations": [],
            "next": None,
        }
        assert (
            await client.get("/api/whatsapp/conversations/not-a-uuid/messages", headers=auth(token))
        ).status_code == 404


json_values = strategies.json_values(max_leaves=12)
events = st.sampled_from(
    [
        "messages.upsert",
        "messages.update",
        "messages.delete",
        "messages.edited",
        "messages.set",
        "send.message",
        "contacts.upsert",
        "chats.upsert",
        "chats.delete",
        "presence.update",
        "groups.upsert",
        "group-participants.update",
        "connection.update",
        "qrcode.updated",
        "call",
        "labels.edit",
    ]
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"event": events, "instance": st.just("INSTANCE"), "data": json_values}),
    st.fixed_dictionaries(
        {
            "event": events,
            "instance": st.just("INSTANCE"),
            "data": st.fixed_dictionaries(
                {"key": json_values, "message": json_values, "messageTimestamp": json_values}
            ),
        }
    ),
    st.binary(max_size=64),
)


async def test_arbitrary_bodies_get_4xx_or_200_never_5xx(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    results: list[int] = []
    async with http(service.url) as client:
        name = await _instance(client, user)
        samples: list[Any] = []

        @settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
        @given(bodies)
        def collect(body: Any) -> None:
            samples.append(body)

        collect()
        for body in samples:
            if isinstance(body, bytes):
                content = body
            else:
                text = json.dumps(body).replace('"INSTANCE"', json.dumps(name))
                content = text.encode()
            answer = await client.post(
                "/api/webhook/whatsapp", content=content, headers=WEBHOOK_HEADERS
            )
            results.append(answer.status_code)
            assert answer.status_code in (200, 400), (answer.status_code, content[:300])
            if answer.status_code == 400:
                assert answer.json()["error"]["message"]
        await _settled(runner.database_url)
        # The actor is alive and well after applying whatever was accepted.
        view = await client.get("/api/whatsapp/instance", headers=auth(user_token(user)))
        assert view.status_code == 200
        handle = service.actors.supervisor.get(name)
        assert handle is not None and handle.status == "running" and handle.restarts == 0
    assert 200 in results and 400 in results
    outcomes = await fetch_rows(
        runner.database_url, "SELECT DISTINCT outcome FROM webhook_inbox WHERE outcome = 'error'"
    )
    assert outcomes == [], "no accepted event failed with a bug"
