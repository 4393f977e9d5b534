"""No configured secret, no instance's Evolution key, in anything the service says or keeps: a
whole session (connect, scan, messages both ways, webhooks carrying Evolution's `apikey`, an
Evolution outage, the operators' views) is recorded (every log record, every HTTP body, every
WebSocket frame, every stored payload) and searched."""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from auzap_actors.core.webhook_auth import instance_secret

from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    open_instance,
    sim_post_ok,
    user_token,
)
from .payloads import envelope, text_message

INSTANCE_APIKEY = "B5C6D7E8-EVOLUTION-INSTANCE-KEY-0123456789"


async def test_no_secret_in_logs_bodies_frames_or_stored_payloads(
    runner: ServiceRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = await runner.start(AUZAP_HEALTH_INTERVAL_S="1")
    bodies: list[str] = []
    frames: list[str] = []
    user = uuid.uuid4()
    name = f"user_{user}"
    token = user_token(user)

    def keep(answer: httpx.Response) -> httpx.Response:
        bodies.append(answer.text)
        return answer

    async def send(client: httpx.AsyncClient, text: str) -> httpx.Response:
        return keep(
            await client.post(
                "/api/whatsapp/messages",
                json={"to": "5511933332222", "text": text},
                headers=auth(token),
            )
        )

    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with (
        http(service.url) as client,
        http(service.simulator_url or "") as sim,
        open_websocket_url(ws_url) as ws,
    ):

        async def read_frames() -> None:
            while True:
                frames.append(await ws.get_message())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_frames)
            await open_instance(client, sim, user, "5511944443333")
            await sim_post_ok(
                sim, f"/_sim/instances/{name}/inbound", {"from": "5511933332222", "text": "oi"}
            )
            sent = await send(client, "olá")
            assert sent.status_code == 202, sent.text
            # Evolution with AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES puts the instance's key in
            # every envelope: accepted, and never stored.
            body = envelope(
                "messages.upsert",
                name,
                text_message("3EB0C0FFEE000001", "5511922221111@s.whatsapp.net", "com chave"),
            )
            body["apikey"] = INSTANCE_APIKEY
            for route in ("/api/webhook/whatsapp", "/api/webhook/test"):
                posted = keep(await client.post(route, json=body, headers=WEBHOOK_HEADERS))
                assert posted.status_code == 200, posted.text
            # Evolution down: users read generic sentences, operators the log.
            await sim_post_ok(sim, "/_sim/faults", {"mode": "down"})

            async def unreachable_shown() -> bool:
                view = keep(await client.get("/api/whatsapp/instance", headers=auth(token)))
                return "Evolution API unreachable" in view.json()["health"]["issues"]

            await eventually(unreachable_shown, timeout=30)

            async def circuit_open() -> bool:
                ready = keep(await client.get("/readyz"))
                return bool(ready.json()["evolution"]["status"] == "open")

            await eventually(circuit_open, timeout=60, interval=0.5)
            refused = await send(client, "de novo")
            assert refused.status_code == 503, refused.text
            await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
            for path in ("/admin/tree", "/readyz", "/healthz"):
                keep(await client.get(path, headers=auth(ADMIN_TOKEN)))
            for path in ("/api/whatsapp/instance", "/api/whatsapp/conversations"):
                keep(await client.get(path, headers=auth(token)))
            nursery.cancel_scope.cancel()

    (row,) = await fetch_rows(
        runner.database_url,
        "SELECT evolution_token FROM whatsapp_instances WHERE instance_name = $1",
        name,
    )
    secrets = {
        "AUZAP_JWT_SECRET": JWT_SECRET,
        "AUZAP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "the instance's webhook secret": instance_secret(WEBHOOK_SECRET, name),
        "EVOLUTION_API_KEY": SIM_API_KEY,
        "AUZAP_ADMIN_TOKEN": ADMIN_TOKEN,
        "the instance's Evolution token": row["evolution_token"],
        "the envelope's apikey": INSTANCE_APIKEY,
    }
    assert all(secrets.values())
    stored: list[str] = []
    for query in (
        "SELECT payload::text AS t FROM webhook_inbox",
        "SELECT row_to_json(m)::text AS t FROM messages m",
        "SELECT (to_jsonb(i) - 'evolution_token')::text AS t FROM whatsapp_instances i",
    ):
        stored += [r["t"] for r in await fetch_rows(runner.database_url, query)]
    logs = [record.getMessage() for record in caplog.records]
    logs += [caplog.text]
    places = {"log": logs, "HTTP body": bodies, "frame": frames, "stored row": stored}
    assert len(frames) > 5 and len(stored) > 5 and len(bodies) > 5
    leaks = [
        f"{secret_name} in a {place}"
        for secret_name, secret in secrets.items()
        for place, texts in places.items()
        if any(secret in text for text in texts)
    ]
    assert leaks == []
    # Where Evolution runs is for operators: not in what users read.
    evolution_host = urlsplit(service.simulator_url or "").netloc
    user_facing = [b for b in bodies if "evolution_breaker" not in b] + frames
    assert not [t for t in user_facing if evolution_host in t]
    assert any(json.loads(f)["type"] == "message" for f in frames)
