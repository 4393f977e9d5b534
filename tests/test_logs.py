"""Structured logs (README "Operators"): JSON lines (or text on a terminal), a correlation id
per request (a sane X-Request-Id is kept and echoed) carried into the actor's work, per webhook
event from its inbox row, and no secret in any line.

The service runs in this process; its production logging (the launcher's `configure_logging`)
is installed at DEBUG on a stream the test reads, flows that handle every secret are driven
(a demo login, connect and scan, webhooks by the secret header and by `jwt_key` JWTs, Evolution
answers, admin calls, bad tokens), and every captured line is searched."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from auzap_actors.core.webhook_auth import instance_secret
from auzap_actors.observability.logs import JsonFormatter, Redactor, TextFormatter
from auzap_actors.serve import configure_logging
from auzap_actors.store.db import open_pool

from .conftest import (
    ADMIN_TOKEN,
    JWT_SECRET,
    SIM_API_KEY,
    WEBHOOK_SECRET,
    ServiceRunner,
    make_settings,
)
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    next_frame,
    open_instance,
    user_token,
)
from .payloads import envelope, text_message
from .test_inbox_rows import POISON

A_JWT = jwt.encode({"sub": str(uuid.uuid4()), "exp": 2_000_000_000}, "k" * 32, algorithm="HS256")


@contextmanager
def captured_logs(settings: Any) -> Iterator[io.StringIO]:
    """The launcher's logging at DEBUG into a buffer, undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(settings, stream=stream)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_the_redactor_removes_every_shape_of_secret() -> None:
    redactor = Redactor(["configured-secret-value-123"])
    cases = {
        f"token {A_JWT} seen": A_JWT,
        "Authorization: Bearer abc.def-ghi_123": "abc.def-ghi_123",
        "headers={'apikey': 'B5C6D7E8-KEY-0001'}": "B5C6D7E8-KEY-0001",
        '{"apikey": "B5C6D7E8-KEY-0002", "x": 1}': "B5C6D7E8-KEY-0002",
        "GET /ws?token=sekrit-token-0003&x=1": "sekrit-token-0003",
        "X-Auzap-Webhook-Secret: 9f86d081884c7d659a2feaa0c55ad015": "9f86d081884c7d659a2f",
        "created with hash=ABCDEF0123456789": "ABCDEF0123456789",
        "the value configured-secret-value-123 leaked": "configured-secret-value-123",
        "admin_token = 'letmein-0123456789'": "letmein-0123456789",
        "password: hunter2hunter2": "hunter2hunter2",
    }
    for text, secret in cases.items():
        redacted = redactor.redact(text)
        assert secret not in redacted and "[redacted" in redacted, (text, redacted)
    assert redactor.redact(f"GET /ws?token={A_JWT}") == "GET /ws?token=[redacted-jwt]"
    # Ordinary sentences stay readable.
    plain = "The admin token is missing or wrong."
    assert redactor.redact(plain) == plain
    assert redactor.redact("evolution GET /instance/connect/user_1") == (
        "evolution GET /instance/connect/user_1"
    )


def test_json_and_text_formats() -> None:
    redactor = Redactor([])
    record = logging.makeLogRecord(
        {
            "name": "auzap_actors.x",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "hello %s",
            "args": ("world",),
            "correlation_id": "req-1",
            "http_status": 200,
        }
    )
    line = json.loads(JsonFormatter(redactor).format(record))
    assert line["message"] == "hello world" and line["level"] == "info"
    assert line["logger"] == "auzap_actors.x" and line["correlation_id"] == "req-1"
    assert line["http_status"] == 200 and line["ts"].endswith("+00:00")
    text = TextFormatter(redactor).format(record)
    assert text.endswith("INFO auzap_actors.x [req-1]: hello world")


async def test_no_secret_in_any_log_line_and_correlation_ids_follow_the_work(
    runner: ServiceRunner,
) -> None:
    settings = make_settings(runner.database_url, runner.tmp_path, AUZAP_LOG_FORMAT="json")
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(POISON)
    with captured_logs(settings) as stream:
        # Deliberately, a line full of secrets: the handler must redact it.
        logging.getLogger("auzap_actors.test").warning(
            "leak %s %s %s %s", SIM_API_KEY, WEBHOOK_SECRET, ADMIN_TOKEN, JWT_SECRET
        )
        # A login: demo mode's (a real deployment's users log in at Supabase), then its token
        # in use; the banner prints the demo token on stdout, never in the log.
        demo_service = await runner.start(demo=True)
        async with http(demo_service.url) as client:
            login = await client.post("/api/demo/login")
            assert login.status_code == 200
            demo = login.json()["token"]
            connected = await client.post("/api/whatsapp/connect", headers=auth(demo))
            assert connected.status_code == 200
        await runner.stop()
        service = await runner.start(AUZAP_LOG_FORMAT="json", AUZAP_HEALTH_INTERVAL_S="0.5")
        user = uuid.uuid4()
        token = user_token(user)
        name = f"user_{user}"
        ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
        async with (
            http(service.url) as client,
            http(service.simulator_url or "") as sim,
            open_websocket_url(ws_url) as ws,
            trio.open_nursery() as nursery,
        ):
            # The socket (its ?token= is the user's JWT) reads frames all along.
            await next_frame(ws)
            nursery.start_soon(_read_forever, ws)
            answer = await client.post(
                "/api/whatsapp/connect",
                headers={**auth(token), "X-Request-Id": "connect-req-1"},
            )
            assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "connect-req-1"
            await open_instance(client, sim, user, "5511966665555")
            # A generated id when none (or an insane one) is given.
            for given in (None, "bad id with spaces", "x" * 65):
                headers = {"X-Request-Id": given} if given else {}
                answer = await client.get("/healthz", headers=headers)
                assert answer.headers["X-Request-Id"] not in ("", given)
            # Webhooks: the master secret, the instance's own, a jwt_key JWT, wrong ones.
            mine = instance_secret(WEBHOOK_SECRET, name)
            now = int(time.time())
            evolution_jwt = jwt.encode(
                {"app": "evolution", "action": "webhook", "iat": now, "exp": now + 600},
                mine,
                algorithm="HS256",
            )
            for n, headers in enumerate(
                (WEBHOOK_HEADERS, {"X-Auzap-Webhook-Secret": mine}, auth(evolution_jwt))
            ):
                body = envelope(
                    "messages.upsert",
                    name,
                    text_message(f"3EB0CC0{n}", "5511922221111@s.whatsapp.net", f"m {n}"),
                )
                body["apikey"] = SIM_API_KEY
                posted = await client.post("/api/webhook/whatsapp", json=body, headers=headers)
                assert posted.status_code == 200, posted.text
            for headers in (
                {"X-Auzap-Webhook-Secret": "wrong-secret-0123456789abcdef"},
                auth(jwt.encode({"app": "evolution"}, "wrong-key-" * 4, algorithm="HS256")),
            ):
                refused = await client.post("/api/webhook/whatsapp", json=body, headers=headers)
                assert refused.status_code == 401
            # A poisoned event, delivered under a known request id: the actor logs its failure
            # under that id.
            poison = envelope(
                "messages.upsert", name, text_message("POISON", "5511922221111@s.whatsapp.net", "x")
            )
            posted = await client.post(
                "/api/webhook/whatsapp",
                json=poison,
                headers={**WEBHOOK_HEADERS, "X-Request-Id": "poison-req-7"},
            )
            assert posted.status_code == 200
            # Admin calls, good and bad tokens, a user's bad token, a send through Evolution.
            for path in ("/admin/tree", "/admin/instances", f"/admin/instances/{name}"):
                assert (await client.get(path, headers=auth(ADMIN_TOKEN))).status_code == 200
                assert (await client.get(path, headers=auth(A_JWT))).status_code == 401
            assert (await client.get("/metrics")).status_code == 200
            bad = await client.get("/api/whatsapp/instance", headers=auth(token + "x"))
            assert bad.status_code == 401
            sent = await client.post(
                "/api/whatsapp/messages",
                json={"to": "5511922221111", "text": "olá"},
                headers=auth(token),
            )
            assert sent.status_code == 202, sent.text
            restarted = await client.post(
                f"/admin/instances/{name}/restart", headers=auth(ADMIN_TOKEN)
            )
            assert restarted.status_code == 200

            async def poison_settled() -> bool:
                return "poison-req-7" in stream.getvalue() and "settled as failed" in (
                    stream.getvalue()
                )

            await eventually(poison_settled, timeout=15)
            nursery.cancel_scope.cancel()
        await runner.stop()
    (row,) = await fetch_rows(
        runner.database_url,
        "SELECT evolution_token FROM whatsapp_instances WHERE instance_name = $1",
        name,
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) > 20
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    secrets = {
        "EVOLUTION_API_KEY": SIM_API_KEY,
        "AUZAP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "the instance's webhook secret": instance_secret(WEBHOOK_SECRET, name),
        "AUZAP_ADMIN_TOKEN": ADMIN_TOKEN,
        "AUZAP_JWT_SECRET": JWT_SECRET,
        "a user's JWT": token,
        "the demo login's JWT": demo,
        "a webhook jwt_key token": evolution_jwt,
        "the instance's Evolution token": row["evolution_token"],
    }
    assert all(secrets.values())
    leaks = [f"{what} in: {line}" for line in lines for what, s in secrets.items() if s in line]
    assert leaks == []
    assert any("[redacted]" in line for line in lines)  # the deliberate leak was caught
    # Correlation: the connect's letter was handled under the request's id (the actor created
    # the instance in Evolution under it), and the poisoned row's failure under its delivery's.
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_id.setdefault(record.get("correlation_id", ""), []).append(record)
    assert any(
        r["logger"] == "auzap_actors.evolution.client" and "/instance/create" in r["message"]
        for r in by_id["connect-req-1"]
    ), by_id.get("connect-req-1")
    poisoned = by_id["poison-req-7"]
    assert any(r["logger"] == "auzap_actors.actors.inbox_drain" for r in poisoned)
    assert any("settled as failed" in r["message"] for r in poisoned)
    # Failed requests are logged with their status (the 401s above).
    assert any(r.get("http_status") == 401 for r in records)


async def _read_forever(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()
