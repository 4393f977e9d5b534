"""The HTTP webhook routes (CONTRACT §5): authentication, persist-then-acknowledge,
exactly-once apply, clear 4xx for bad input, the by-event, per-user, legacy and dry-run routes,
orphans."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import trio
from trio_websocket import open_websocket_url

from .conftest import WEBHOOK_SECRET, ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    next_frame,
    no_frame,
    qr_webhook_applied,
    user_token,
    wait_frame,
)


def envelope(
    event: str, instance: str, data: Any, when: str = "2026-11-29T12:00:00.000Z"
) -> dict[str, Any]:
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": "http://127.0.0.1/api/webhook/whatsapp",
        "date_time": when,
        "sender": "5511955550000@s.whatsapp.net",
        "server_url": "http://evolution:8080",
        "apikey": None,
    }


def opened(instance: str, phone: str = "5511955550000") -> dict[str, Any]:
    return {
        "instance": instance,
        "wuid": f"{phone}@s.whatsapp.net",
        "profileName": "Ana",
        "profilePictureUrl": None,
        "state": "open",
        "statusReason": 200,
    }


async def test_webhook_auth_and_bad_input(runner: ServiceRunner) -> None:
    service = await runner.start()
    body = envelope("connection.update", "user_x", {"state": "connecting"})
    async with http(service.url) as client:
        url = "/api/webhook/whatsapp"
        missing = await client.post(url, json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = await client.post(url, json=body, headers={"X-Auzap-Webhook-Secret": "nope"})
        assert wrong.status_code == 401
        forged = jwt.encode({"exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256")
        assert (await client.post(url, json=body, headers=auth(forged))).status_code == 401

        # Evolution's jwt_key mode: a short-lived HS256 token signed with the shared secret.
        now = int(time.time())
        evolution_jwt = jwt.encode(
            {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"},
            WEBHOOK_SECRET,
            algorithm="HS256",
        )
        ok = await client.post(url, json=body, headers=auth(evolution_jwt))
        assert ok.status_code == 200 and ok.json() == {"accepted": True, "duplicate": False}

        bad_json = await client.post(url, content=b'{"event": "call", ', headers=WEBHOOK_HEADERS)
        assert bad_json.status_code == 400
        assert bad_json.json()["error"]["code"] == "invalid_json"
        assert "not valid JSON" in bad_json.json()["error"]["message"]
        no_event = await client.post(
            url, json={"instance": "x", "data": {}}, headers=WEBHOOK_HEADERS
        )
        assert no_event.status_code == 400 and "event" in no_event.json()["error"]["message"]
        no_instance = await client.post(url, json={"event": "call"}, headers=WEBHOOK_HEADERS)
        assert (
            no_instance.status_code == 400 and "instance" in no_instance.json()["error"]["message"]
        )
        not_object = await client.post(url, json=[1, 2], headers=WEBHOOK_HEADERS)
        assert not_object.status_code == 400

        huge = b'{"event":"call","instance":"x","data":"' + b"A" * (17 * 1024 * 1024) + b'"}'
        too_big = await client.post(url, content=huge, headers=WEBHOOK_HEADERS)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_entity_too_large"

    rows = await fetch_rows(runner.database_url, "SELECT event, instance_name FROM webhook_inbox")
    assert rows == [{"event": "connection.update", "instance_name": "user_x"}], (
        "only the accepted one"
    )


async def test_persist_then_ack_and_exactly_once(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with http(service.url) as client, open_websocket_url(ws_url) as ws:
        await next_frame(ws)
        assert (await client.post("/api/whatsapp/connect", headers=auth(token))).status_code == 200
        await wait_frame(ws, lambda f: f["type"] == "qrcode")

        # The simulator's own connecting/QR webhooks land first, so ours is the last word.
        await eventually(lambda: qr_webhook_applied(runner.database_url, name))
        body = envelope("connection.update", name, opened(name))
        first = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
        assert first.json() == {"accepted": True, "duplicate": False}
        # The 200 came after the commit: the row is there the moment we look.
        stored = await fetch_rows(
            runner.database_url,
            "SELECT event FROM webhook_inbox WHERE instance_name = $1"
            " AND payload->'data'->>'state' = 'open'",
            name,
        )
        assert stored == [{"event": "connection.update"}]

        again = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
        assert again.json() == {"accepted": True, "duplicate": True}

        await wait_frame(ws, lambda f: f["type"] == "status" and f["data"]["status"] == "open")
        note = await wait_frame(ws, lambda f: f["type"] == "notification")
        assert note["data"]["title"] == "WhatsApp connected"
        await no_frame(ws, service, name)  # applied once: no second status, no second notification

    rows = await fetch_rows(
        runner.database_url,
        "SELECT outcome, attempts FROM webhook_inbox WHERE instance_name = $1"
        " AND payload->'data'->>'state' = 'open'",
        name,
    )
    assert rows == [{"outcome": "applied", "attempts": 1}]


async def test_concurrent_duplicates_store_one_row(runner: ServiceRunner) -> None:
    service = await runner.start()
    body = envelope("call", "user_nobody", {"id": "CALL1", "from": "5511@s.whatsapp.net"})
    answers: list[dict[str, Any]] = []
    async with http(service.url) as client:

        async def post() -> None:
            answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            answers.append(answer.json())

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(post)
    assert sum(not a["duplicate"] for a in answers) == 1
    assert all(a["accepted"] for a in answers) and len(answers) == 30
    rows = await fetch_rows(runner.database_url, "SELECT count(*) AS n FROM webhook_inbox")
    assert rows == [{"n": 1}]


async def test_other_routes_orphans_and_dry_run(runner: ServiceRunner) -> None:
    service = await runner.start()
    user, other = uuid.uuid4(), uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    async with http(service.url) as client:
        assert (await client.post("/api/whatsapp/connect", headers=auth(token))).status_code == 200
        # by-events URL
        body = envelope(
            "connection.update",
            name,
            {"instance": name, "state": "connecting", "statusReason": 200},
        )
        by_event = await client.post(
            "/api/webhook/whatsapp/connection-update", json=body, headers=WEBHOOK_HEADERS
        )
        assert by_event.status_code == 200
        mismatch = await client.post(
            "/api/webhook/whatsapp/messages-upsert", json=body, headers=WEBHOOK_HEADERS
        )
        assert mismatch.status_code == 400
        # per-user URL: another user's instance is refused
        forbidden = await client.post(
            f"/api/webhook/user/{other}", json=body, headers=WEBHOOK_HEADERS
        )
        assert forbidden.status_code == 403
        mine = await client.post(
            f"/api/webhook/user/{user}", json=dict(body, date_time="x2"), headers=WEBHOOK_HEADERS
        )
        assert mine.status_code == 200
        # legacy envelope: instance object, upper-snake event
        legacy = {
            "event": "CONNECTION_UPDATE",
            "instance": {"instanceName": name},
            "data": opened(name, "5511944443333"),
            "date_time": "2026-11-29T12:01:00Z",
        }
        assert (
            await client.post("/api/webhook/evolution", json=legacy, headers=WEBHOOK_HEADERS)
        ).status_code == 200

        async def is_open() -> bool:
            view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
            return bool(view["status"] == "open" and view["phone_number"] == "5511944443333")

        await eventually(is_open)
        # events for an instance nobody owns are kept as orphans, never a 5xx
        orphan = envelope("messages.upsert", "user_unknown", {"key": {"id": "X"}})
        assert (
            await client.post("/api/webhook/whatsapp", json=orphan, headers=WEBHOOK_HEADERS)
        ).status_code == 200
        # dry run: answers what it would do, writes nothing
        count_before = await fetch_rows(
            runner.database_url, "SELECT count(*) AS n FROM webhook_inbox"
        )
        dry = await client.post(
            "/api/webhook/test",
            json=envelope(
                "qrcode.updated",
                name,
                {"message": "QR code limit reached, please login again", "statusCode": 500},
            ),
            headers=WEBHOOK_HEADERS,
        )
        assert dry.status_code == 200
        assert dry.json()["dry_run"] is True and "QrExpired" in dry.json()["would"]
        assert (await client.post("/api/webhook/test", json=body)).status_code == 401
        count_after = await fetch_rows(
            runner.database_url, "SELECT count(*) AS n FROM webhook_inbox"
        )
        assert count_before == count_after

    async def orphaned() -> bool:
        rows = await fetch_rows(
            runner.database_url,
            "SELECT outcome FROM webhook_inbox WHERE instance_name = 'user_unknown'",
        )
        return rows == [{"outcome": "orphan"}]

    await eventually(orphaned)
