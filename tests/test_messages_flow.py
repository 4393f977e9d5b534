"""The message flow against the simulator — inbound messages stored and pushed, the
user API (conversations, messages, send), receipts advancing an outgoing message."""

from __future__ import annotations

import uuid
from typing import Any

from trio_websocket import open_websocket_url

from auzap_actors.actors.messages import Barrier
from auzap_actors.store import inbox
from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    http,
    next_frame,
    open_instance,
    sim_post_ok,
    user_token,
    wait_frame,
)
from .payloads import envelope, text_message


async def test_inbound_send_and_receipts(runner: ServiceRunner) -> None:
    service = await runner.start()
    user, org = uuid.uuid4(), uuid.uuid4()
    colleague = uuid.uuid4()
    token = user_token(user, org)
    name = f"user_{user}"
    ws_base = service.url.replace("http://", "ws://")
    async with (
        http(service.url) as client,
        open_websocket_url(f"{ws_base}/ws?token={token}") as ws,
        open_websocket_url(f"{ws_base}/ws?token={user_token(colleague, org)}") as ws_org,
    ):
        await next_frame(ws)
        await next_frame(ws_org)
        # Sending before connecting is refused with 409.
        early = await client.post(
            "/api/whatsapp/messages",
            headers=auth(token),
            json={"to": "5511988887777", "text": "hi"},
        )
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_connected"
        await open_instance(client, service.simulator_url or "", user, "5511900000001", org=org)

        async with http(service.simulator_url or "") as sim:
            answer = await sim.post(
                f"/_sim/instances/{name}/inbound",
                json={"from": "5511988887777", "text": "Olá!", "push_name": "Bia"},
            )
            assert answer.status_code == 200, answer.text
        frame = await wait_frame(ws, lambda f: f["type"] == "message")
        message = frame["data"]
        assert message["text"] == "Olá!" and message["from_me"] is False
        assert message["remote_jid"] == "5511988887777@s.whatsapp.net"
        assert message["push_name"] == "Bia" and message["type"] == "text"
        assert message["status"] == "delivered"
        org_frame = await wait_frame(ws_org, lambda f: f["type"] == "org.message")
        assert org_frame["data"]["id"] == message["id"]

        conversations = (
            await client.get("/api/whatsapp/conversations", headers=auth(token))
        ).json()
        assert conversations["next"] is None and len(conversations["conversations"]) == 1
        conversation = conversations["conversations"][0]
        assert conversation["remote_jid"] == "5511988887777@s.whatsapp.net"
        assert conversation["contact"]["push_name"] == "Bia"
        assert conversation["contact"]["phone_number"] == "5511988887777"
        assert conversation["last_message"]["id"] == message["id"]
        assert conversation["unread_count"] == 1 and conversation["title"] == "Bia"

        sent = await client.post(
            "/api/whatsapp/messages",
            headers=auth(token),
            json={"to": "+55 11 98888 7777", "text": "Tudo bem?"},
        )
        assert sent.status_code == 202, sent.text
        mine = sent.json()["message"]
        assert mine["from_me"] is True and mine["status"] == "pending"
        assert mine["conversation_id"] == conversation["id"]
        echo = await wait_frame(ws, lambda f: f["type"] == "message" and f["data"]["from_me"])
        assert echo["data"]["id"] == mine["id"]
        # The simulator acknowledges (SERVER_ACK, then DELIVERY_ACK): the status only advances.
        delivered = await wait_frame(
            ws, lambda f: f["type"] == "message_status" and f["data"]["status"] == "delivered"
        )
        assert delivered["data"]["message_id"] == mine["id"]
        async with http(service.simulator_url or "") as sim:
            outbox = (await sim.get("/_sim/sent")).json()
        assert [(m["number"], m["text"]) for m in outbox] == [("5511988887777", "Tudo bem?")]

        page = (
            await client.get(
                f"/api/whatsapp/conversations/{conversation['id']}/messages", headers=auth(token)
            )
        ).json()
        assert [m["text"] for m in page["messages"]] == ["Tudo bem?", "Olá!"]
        assert page["messages"][0]["status"] == "delivered"

        # Bad input
        for body in (
            {"to": "abc", "text": "x"},
            {"to": "5511988887777", "text": ""},
            {"text": "x"},
            {"to": "5511988887777", "text": "x" * 5000},
        ):
            bad = await client.post("/api/whatsapp/messages", headers=auth(token), json=body)
            assert bad.status_code == 400, body
        not_json = await client.post("/api/whatsapp/messages", headers=auth(token), content=b"{")
        assert not_json.status_code == 400
        bad_limit = await client.get("/api/whatsapp/conversations?limit=0", headers=auth(token))
        assert bad_limit.status_code == 400
        bad_cursor = await client.get("/api/whatsapp/conversations?before=zzz", headers=auth(token))
        assert bad_cursor.status_code == 400


async def test_delete_keeps_messages_unless_purged_and_reconnect_works(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    async with http(service.url) as client:
        await open_instance(client, service.simulator_url or "", user, "5511900000002")
        async with http(service.simulator_url or "") as sim:
            await sim_post_ok(
                sim,
                f"/_sim/instances/{name}/inbound",
                {"from": "5511977770000", "text": "guarde isto"},
            )

        async def one_conversation() -> bool:
            body = (await client.get("/api/whatsapp/conversations", headers=auth(token))).json()
            return len(body["conversations"]) == 1

        await eventually(one_conversation)
        bad = await client.delete("/api/whatsapp/instance?purge=maybe", headers=auth(token))
        assert bad.status_code == 400
        deleted = await client.delete("/api/whatsapp/instance", headers=auth(token))
        assert deleted.status_code == 204
        assert (await client.get("/api/whatsapp/instance", headers=auth(token))).status_code == 404
        assert await one_conversation(), "messages are kept after a plain delete"
        async with http(service.simulator_url or "") as sim:
            listed = (await sim.get("/_sim/instances")).json()
        assert name not in str(listed), "deleted in Evolution too"

        # The same user connects again: a fresh instance, a fresh actor.
        await open_instance(client, service.simulator_url or "", user, "5511900000003")
        purged = await client.delete("/api/whatsapp/instance?purge=true", headers=auth(token))
        assert purged.status_code == 204
        body = (await client.get("/api/whatsapp/conversations", headers=auth(token))).json()
        assert body == {"conversations": [], "next": None}
        again = await client.delete("/api/whatsapp/instance", headers=auth(token))
        assert again.status_code == 404


async def test_a_delete_applies_what_was_accepted_and_a_connect_right_after_works(
    runner: ServiceRunner,
) -> None:
    """A message accepted just before a delete is kept; connecting again at once (while the
    old actor may still be ending) gets a new instance, and nothing is left unapplied."""
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    rounds = 3
    async with http(service.url) as client:
        await open_instance(client, service.simulator_url or "", user, "5511900000004")
        for n in range(rounds):
            message = text_message(
                f"3EB0DE1E7E{n:010d}", "5511977770001@s.whatsapp.net", f"antes do delete {n}"
            )
            accepted = await client.post(
                "/api/webhook/whatsapp",
                json=envelope("messages.upsert", name, message),
                headers=WEBHOOK_HEADERS,
            )
            assert accepted.json() == {"accepted": True, "duplicate": False}
            deleted = await client.delete("/api/whatsapp/instance", headers=auth(token))
            assert deleted.status_code == 204
            await open_instance(client, service.simulator_url or "", user, f"551190000001{n}")
        await service.actors.supervisor.call(name, Barrier(), 5)
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        texts = await pool.fetch(
            "SELECT text FROM messages WHERE instance_name = $1 ORDER BY seq", name
        )
        assert [r["text"] for r in texts] == [f"antes do delete {n}" for n in range(rounds)]
        unapplied = await pool.fetchval(
            "SELECT count(*) FROM webhook_inbox WHERE instance_name = $1 AND applied_at IS NULL",
            name,
        )
        assert unapplied == 0


async def test_retire_marks_a_deleted_instance_s_events_and_keeps_them(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        for n, name in enumerate(("user_gone", "user_gone", "user_other")):
            await pool.execute(
                "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
                " VALUES ($1, $2, 'connection.update', '{}'::jsonb)",
                f"key-{n}",
                name,
            )
        assert await inbox.retire(pool, "user_gone") == 2
        assert await inbox.fetch_pending(pool, "user_gone", 0) == []
        assert len(await inbox.fetch_pending(pool, "user_other", 0)) == 1
        outcomes = await pool.fetch(
            "SELECT outcome, applied_at IS NOT NULL AS closed FROM webhook_inbox"
            " WHERE instance_name = 'user_gone'"
        )
        assert [dict(r.items()) for r in outcomes] == [{"outcome": "deleted", "closed": True}] * 2


async def test_late_events_of_a_deleted_instance_never_reach_its_successor(
    runner: ServiceRunner,
) -> None:
    """Evolution's logout after a delete is asynchronous: its close/401 may arrive after the
    delete, even after the user has connected again.  It must not log the new instance out."""
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with http(service.url) as client:
        await open_instance(client, service.simulator_url or "", user, "5511900000005")
        assert (
            await client.delete("/api/whatsapp/instance", headers=auth(token))
        ).status_code == 204
        late = envelope(
            "connection.update", name, {"instance": name, "state": "close", "statusReason": 401}
        )
        accepted = await client.post("/api/webhook/whatsapp", json=late, headers=WEBHOOK_HEADERS)
        assert accepted.json() == {"accepted": True, "duplicate": False}
        async with open_websocket_url(ws_url) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            connected = await client.post("/api/whatsapp/connect", headers=auth(token))
            assert connected.status_code == 200, connected.text
            seen: list[dict[str, Any]] = []
            await wait_frame(ws, lambda f: f["type"] == "qrcode", seen=seen)
            assert not [f for f in seen if f["type"] == "notification"], seen
            view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
            assert view["status"] == "waiting_qr" and view["health"]["issues"] == []
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        # This one came before the new row: kept, never applied.  (The simulator's own copy
        # may come before or after it: see tests/test_late_logout.py for both.)
        outcome = await pool.fetchval(
            "SELECT outcome FROM webhook_inbox WHERE instance_name = $1"
            " AND payload->>'date_time' = $2",
            name,
            late["date_time"],
        )
    assert outcome == "deleted"
