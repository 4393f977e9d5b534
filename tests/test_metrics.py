"""`GET /metrics` (README "Operators"): the exposition parses with prometheus-client's own
parser, and every metric moves when the test causes what it counts, on the running service
(real PostgreSQL, the simulator over real HTTP)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    connect_websocket_url,
    open_websocket_url,
)

from auzap_actors.actors.messages import Barrier, Crash
from auzap_actors.core.supervision import RestartPolicy

from .conftest import ADMIN_TOKEN, ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    barrier,
    eventually,
    http,
    next_frame,
    open_instance,
    scrape,
    sim_post_ok,
    total,
    user_token,
    value,
)
from .payloads import envelope, text_message


async def test_metrics_parse_and_move_with_webhooks_instances_sockets_and_the_inbox(
    runner: ServiceRunner,
) -> None:
    service = await runner.start(AUZAP_WEBHOOK_MAX_BYTES="65536")
    user = uuid.uuid4()
    name = f"user_{user}"
    token = user_token(user)
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        before = await scrape(client)
        # The auto-reply counter exists from the start (the AI responder will move it).
        for outcome in ("sent", "failed", "skipped"):
            assert value(before, "auzap_auto_replies_total", outcome=outcome) == 0
        assert value(before, "auzap_evolution_breaker_state", state="closed") == 1
        assert value(before, "auzap_inbox_lag_seconds") == 0
        assert value(before, "auzap_websockets_connected") == 0

        ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
        async with open_websocket_url(ws_url) as ws:
            await next_frame(ws)
            await open_instance(client, sim, user, "5511944443333")
            during = await scrape(client)
            assert value(during, "auzap_websockets_connected") == 1
            assert value(during, "auzap_websocket_frames_published_total") > 0
        assert value(during, "auzap_instances", status="open") == 1
        assert value(during, "auzap_actors", state="running") == 1
        assert value(during, "auzap_mailbox_peak_messages") >= 1
        for endpoint, method in (
            ("/instance/create", "POST"),
            ("/instance/connect/{instance}", "GET"),
        ):
            labels = {"method": method, "endpoint": endpoint, "outcome": "ok"}
            assert value(during, "auzap_evolution_requests_total", **labels) >= 1
            assert (
                value(
                    during,
                    "auzap_evolution_request_duration_seconds_count",
                    method=method,
                    endpoint=endpoint,
                )
                >= 1
            )
        # No instance name in any label: bounded cardinality.
        assert not [key for key in during if name in json.dumps(key)]

        # Webhooks: accepted, the same delivery again (a duplicate), refused 401, 400, 413.
        body = envelope(
            "messages.upsert", name, text_message("3EB0AA01", "5511922221111@s.whatsapp.net", "oi")
        )
        for _ in range(2):
            answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert answer.status_code == 200, answer.text
        wrong = {"X-Auzap-Webhook-Secret": "not-the-secret-0123456789abcdef"}
        assert (
            await client.post("/api/webhook/whatsapp", json=body, headers=wrong)
        ).status_code == 401
        bad = await client.post(
            "/api/webhook/whatsapp", content=b"{not json", headers=WEBHOOK_HEADERS
        )
        assert bad.status_code == 400
        huge = await client.post(
            "/api/webhook/whatsapp", content=b"x" * 70_000, headers=WEBHOOK_HEADERS
        )
        assert huge.status_code == 413
        await barrier(service, name)
        after = await scrape(client)

        def moved(metric: str, **labels: str) -> float:
            return value(after, metric, **labels) - value(before, metric, exposed=False, **labels)

        assert moved("auzap_webhooks_received_total", event="messages.upsert") == 2
        assert moved("auzap_webhooks_duplicates_total", event="messages.upsert") == 1
        assert moved("auzap_webhooks_rejected_total", event="unknown", reason="unauthorized") == 0
        assert (
            moved("auzap_webhooks_rejected_total", event="messages.upsert", reason="unauthorized")
            == 1
        )
        assert moved("auzap_webhooks_rejected_total", event="unknown", reason="invalid_json") == 1
        assert moved("auzap_webhooks_rejected_total", event="unknown", reason="too_large") == 1
        assert moved("auzap_inbox_rows_settled_total", outcome="applied") >= 1
        assert moved("auzap_inbox_apply_latency_seconds_count") >= 1
        assert moved("auzap_inbox_apply_duration_seconds_count") >= 1
        assert value(after, "auzap_inbox_lag_seconds") == 0

        # Inbox lag: the actor is stopped, an event waits; started again, it is applied.
        admin = auth(ADMIN_TOKEN)
        assert (
            await client.post(f"/admin/instances/{name}/stop", headers=admin)
        ).status_code == 200
        waiting = envelope(
            "messages.upsert", name, text_message("3EB0AA02", "5511922221111@s.whatsapp.net", "2")
        )
        answer = await client.post("/api/webhook/whatsapp", json=waiting, headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200
        await trio.sleep(0.3)
        stopped = await scrape(client)
        assert value(stopped, "auzap_inbox_lag_seconds") >= 0.2
        assert value(stopped, "auzap_actors", state="stopped") == 1
        assert value(stopped, "auzap_instances", status="open") == 1
        assert (
            await client.post(f"/admin/instances/{name}/start", headers=admin)
        ).status_code == 200
        await barrier(service, name)
        started = await scrape(client)
        assert value(started, "auzap_inbox_lag_seconds") == 0
        assert (
            value(started, "auzap_inbox_apply_latency_seconds_sum")
            - value(after, "auzap_inbox_apply_latency_seconds_sum")
            >= 0.2
        )

        # An operator's restart.
        answer = await client.post(f"/admin/instances/{name}/restart", headers=admin)
        assert answer.status_code == 200
        restarted = await scrape(client)
        assert value(restarted, "auzap_actor_restarts_total", reason="operator") == 1

        # Mailbox depth: the actor is busy with a slow Evolution call while letters queue.
        await sim_post_ok(sim, "/_sim/faults", {"mode": "slow", "latency_ms": 1500})
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                await client.post(
                    "/api/whatsapp/messages",
                    json={"to": "5511922221111", "text": "devagar"},
                    headers=auth(token),
                )

            nursery.start_soon(send)
            await trio.sleep(0.4)
            for _ in range(3):
                service.actors.supervisor.cast(name, Barrier())
            busy = await scrape(client)
            assert value(busy, "auzap_mailbox_messages") >= 3
            assert value(busy, "auzap_mailbox_messages_max") >= 3
            assert value(busy, "auzap_mailbox_peak_messages") >= 3
        await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
        sent = await scrape(client)
        labels = {"method": "POST", "endpoint": "/message/sendText/{instance}"}
        assert value(sent, "auzap_evolution_request_duration_seconds_sum", **labels) >= 1.4


async def test_metrics_move_with_health_checks_reconnects_crashes_and_the_breaker(
    runner: ServiceRunner,
) -> None:
    service = await runner.start(
        AUZAP_HEALTH_INTERVAL_S="0.5",
        AUZAP_BREAKER_FAILURES="2",
        AUZAP_BREAKER_RESET_S="60",
        AUZAP_RETRY_ATTEMPTS="1",
    )
    supervisor = service.actors.supervisor
    supervisor.policy = RestartPolicy(
        max_restarts=1, window_s=60, backoff_base_s=0.01, park_base_s=0.5
    )
    user = uuid.uuid4()
    name = f"user_{user}"
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        before = await scrape(client)
        await open_instance(client, sim, user, "5511955554444")

        async def checks(result: str) -> float:
            return total(await scrape(client), "auzap_health_checks_total", result=result)

        await eventually(lambda: _above(checks("open"), 0), timeout=10)

        # A drop Evolution will not repair: checks fail, then the actor reconnects.
        await sim_post_ok(
            sim, f"/_sim/instances/{name}/disconnect", {"code": 428, "auto_reconnect": False}
        )

        async def reconnected() -> bool:
            # The reconnect's connect answers `open` or, usually, not yet (`pending`: the
            # open follows on a webhook).
            return total(await scrape(client), "auzap_reconnects_total") >= 1

        await eventually(reconnected, timeout=20, interval=0.2)
        assert await checks("not_open") >= 1

        # Crashes: one restart, then the budget is spent and the actor is parked, then revived.
        supervisor.cast(name, Crash("test: crash 1"))
        await eventually(lambda: _child(service, name).restarts == 1 and _running(service, name))
        supervisor.cast(name, Crash("test: crash 2"))

        async def parked() -> bool:
            samples = await scrape(client)
            return value(samples, "auzap_actors_parked") == 1

        await eventually(parked, timeout=5)
        samples = await scrape(client)
        assert value(samples, "auzap_actors", state="crashed") == 1
        assert value(samples, "auzap_actor_parkings_total") == 1
        assert value(samples, "auzap_actor_restarts_total", reason="crash") == 1
        await eventually(lambda: _running(service, name), timeout=5)
        samples = await scrape(client)
        assert value(samples, "auzap_actor_restarts_total", reason="revival") == 1
        assert value(samples, "auzap_actors_parked") == 0

        # Evolution down: calls fail, the breaker opens, further calls fail fast.
        await sim_post_ok(sim, "/_sim/faults", {"mode": "down"})

        async def breaker_open() -> bool:
            samples = await scrape(client)
            return value(samples, "auzap_evolution_breaker_state", state="open") == 1

        await eventually(breaker_open, timeout=20, interval=0.2)
        await eventually(lambda: _above(checks("unreachable"), 0), timeout=10)
        samples = await scrape(client)
        assert value(samples, "auzap_evolution_breaker_state", state="closed") == 0
        assert value(samples, "auzap_evolution_breaker_opened_total") == 1
        assert total(samples, "auzap_evolution_requests_total", outcome="unavailable") >= 2
        await eventually(
            lambda: _above(_total_of(client, "auzap_evolution_requests_total", "circuit_open"), 0),
            timeout=10,
        )
        await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
        # Nothing moved backwards, and nothing that counts instances carries their names.
        for key, old in before.items():
            if key[0].endswith("_total"):
                assert samples.get(key, old) >= old, key
        assert not [key for key in samples if name in json.dumps(key)]


async def test_metrics_token_when_auth_is_required(runner: ServiceRunner) -> None:
    metrics_token = "scrape-only-token-0123456789"
    service = await runner.start(AUZAP_METRICS_TOKEN=metrics_token)
    async with http(service.url) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401 and "error" in refused.json()
        wrong = await client.get("/metrics", headers=auth("not-the-token-0123456789"))
        assert wrong.status_code == 401
        await scrape(client, **auth(metrics_token))
        await scrape(client, **auth(ADMIN_TOKEN))
        # The scrape-only token grants nothing else.
        tree = await client.get("/admin/tree", headers=auth(metrics_token))
        assert tree.status_code == 401


async def _above(count: Any, floor: float) -> bool:
    return bool(await count > floor)


async def _total_of(client: httpx.AsyncClient, metric: str, outcome: str) -> float:
    return total(await scrape(client), metric, outcome=outcome)


def _child(service: Any, name: str) -> Any:
    child = service.actors.supervisor.get(name)
    assert child is not None
    return child


def _running(service: Any, name: str) -> bool:
    child = service.actors.supervisor.get(name)
    return child is not None and child.status == "running"


async def test_socket_counters_move_with_evictions_and_refusals(runner: ServiceRunner) -> None:
    service = await runner.start(AUZAP_WS_PER_USER="1", AUZAP_WS_MAX="2")
    alice, bob = user_token(uuid.uuid4()), user_token(uuid.uuid4())
    base = service.url.replace("http://", "ws://") + "/ws?token="
    async with http(service.url) as client, trio.open_nursery() as nursery:
        first = await connect_websocket_url(nursery, base + alice)
        await next_frame(first)
        second = await connect_websocket_url(nursery, base + alice)  # evicts the first
        await next_frame(second)
        with trio.fail_after(5), pytest.raises(ConnectionClosed):
            await first.get_message()

        async def one_open() -> bool:
            return value(await scrape(client), "auzap_websockets_connected") == 1

        await eventually(one_open)
        third = await connect_websocket_url(nursery, base + bob)
        await next_frame(third)
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(base + bob):
                pass
        samples = await scrape(client)
        assert value(samples, "auzap_websockets_connected") == 2
        assert value(samples, "auzap_websockets_evicted_total") == 1
        assert value(samples, "auzap_websockets_refused_total") == 1
        for ws in (second, third):
            await ws.aclose()
