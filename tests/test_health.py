"""Health monitoring, the reconnect policy, retries and the circuit breaker against Evolution,
on trio's MockClock with autojump (virtual minutes pass in fractions of a real second while
idle).

The whole service runs (real PostgreSQL, the simulator over real HTTP).  It starts in real
time; the test then switches to virtual time, which jumps only when nothing, the database
included, has had anything to do for the threshold's real seconds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock
from trio_websocket import WebSocketConnection, open_websocket_url

from auzap_actors.core.health import HealthPolicy, next_check_delay
from auzap_actors.evolution.errors import EvolutionNotFound
from auzap_actors.serve import Running

from .conftest import ServiceRunner
from .helpers import auth, http, next_frame, open_instance, sim_post_ok, user_token

# A jump happens when nothing has run for this many real seconds.  PostgreSQL answers in
# real time, so a jump during a slow query lands on the nearest deadline (a query timeout,
# the inbox's submit timeout) as if the database had hung: with one instance the health
# ticks are far apart and the threshold must exceed the database's worst latency on a busy
# machine.  With 200 instances ticks are dense: any jump lands on the next tick, harmless.
INTERVAL_S = "60"  # the contract's default, which the expected timings below assume
# Every other periodic timer costs a jump (a threshold of real time) per firing: browser
# sockets' pings (a third of the read timeout) are kept out of the virtual minutes.
# Opening 200 instances at once queues for the pool: on a busy machine a wait can pass the
# default 5 s (a 503 that fails the setup, not what these tests are about).
QUIET = {
    "AUZAP_HEALTH_INTERVAL_S": INTERVAL_S,
    "AUZAP_HTTP_READ_TIMEOUT_S": "86400",
    "AUZAP_DB_ACQUIRE_TIMEOUT_S": "60",
}
SPARSE_TIMERS_THRESHOLD = 0.1
DENSE_TIMERS_THRESHOLD = 0.001
# Opening 200 instances (20 at a time) is real work: on a busy machine it takes a while.
SETUP_TIMEOUT_S = 60


@pytest.fixture
def clock() -> MockClock:
    """Real time until the test calls `_virtual`: the service starts in real time (a jump
    while asyncpg opens its connections would land on asyncpg's connect timeout)."""
    return MockClock(rate=1.0)


def _virtual(clock: MockClock, threshold: float = SPARSE_TIMERS_THRESHOLD) -> None:
    """From now on virtual time, jumping to the next deadline whenever the service idles."""
    clock.rate = 0
    clock.autojump_threshold = threshold


async def _notification(ws: WebSocketConnection, timeout: float) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            frame = json.loads(await ws.get_message())
            if frame["type"] == "notification":
                return frame["data"]  # type: ignore[no-any-return]


async def _requests(service: Running) -> dict[str, Any]:
    async with http(service.simulator_url or "") as sim:
        body: dict[str, Any] = (await sim.get("/_sim/requests")).json()
        return body


@asynccontextmanager
async def _connected_user(
    runner: ServiceRunner, clock: MockClock, phone: str
) -> AsyncIterator[tuple[Running, Any, WebSocketConnection, str, str]]:
    """A started service and one user whose instance is open, with their socket past the
    snapshot and the "WhatsApp connected" notification; virtual time from then on."""
    service = await runner.start(**QUIET)
    user = uuid.uuid4()
    token = user_token(user)
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with http(service.url) as client, open_websocket_url(ws_url) as ws:
        await next_frame(ws)
        name = await open_instance(
            client, service.simulator_url or "", user, phone, timeout=SETUP_TIMEOUT_S
        )
        await _notification(ws, 5)
        _virtual(clock)
        yield service, client, ws, token, name


async def test_drop_alert_at_two_reconnect_at_three_then_reconnected(
    runner: ServiceRunner, clock: MockClock
) -> None:
    user = _connected_user(runner, clock, "5511977776666")
    async with user as (service, client, ws, token, name):
        await trio.sleep(700)  # stable for a while: uptime grows
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["health"]["status"] == "healthy" and view["health"]["uptime_seconds"] > 600

        async with http(service.simulator_url or "") as sim:
            answer = await sim.post(
                f"/_sim/instances/{name}/disconnect", json={"code": 428, "auto_reconnect": False}
            )
            assert answer.status_code == 200
        dropped_at = trio.current_time()

        alert = await _notification(ws, 400)
        assert alert["level"] == "warning" and "2 health checks" in alert["message"]
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["health"]["consecutive_failures"] == 2
        assert view["health"]["status"] == "unhealthy" and view["status"] == "connecting"
        # The first failed check comes at any moment of the interval after the drop, the
        # second one (jittered) interval later: never sooner than the shortest interval.
        shortest = next_check_delay(HealthPolicy(interval_s=float(INTERVAL_S)), 0.0)
        assert shortest < trio.current_time() - dropped_at < 200

        started = await _notification(ws, 400)
        assert started["title"] == "Reconnecting WhatsApp" and started["action"] == "reconnect"
        done = await _notification(ws, 60)
        assert done == {
            "level": "info",
            "title": "WhatsApp reconnected",
            "message": "WhatsApp is connected again.",
            "action": "reconnect",
        }
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["status"] == "open" and view["health"]["status"] == "healthy"
        assert view["health"]["consecutive_failures"] == 0
        assert view["health"]["uptime_seconds"] < 60, "uptime restarted at the reconnect"
        with trio.move_on_after(300):  # and nothing else to say
            extra = await _notification(ws, 301)
            raise AssertionError(f"unexpected notification {extra}")
    counts = (await _requests(service))["by_instance"][name]
    assert counts["GET /instance/connect/{instance}"] == 2  # the user's connect + one reconnect


async def test_logout_is_final_no_reconnect_attempts(
    runner: ServiceRunner, clock: MockClock
) -> None:
    user = _connected_user(runner, clock, "5511966665555")
    async with user as (service, client, ws, token, name):
        before = (await _requests(service))["by_instance"][name]
        async with http(service.simulator_url or "") as sim:
            await sim_post_ok(sim, f"/_sim/instances/{name}/disconnect", {"code": 401})
        note = await _notification(ws, 10)
        assert note["level"] == "error" and "logged out" in note["message"]
        with trio.move_on_after(1200):  # 20 virtual minutes: silence
            extra = await _notification(ws, 1201)
            raise AssertionError(f"unexpected notification {extra}")
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["status"] == "disconnected" and view["health"]["status"] == "disconnected"
    after = (await _requests(service))["by_instance"][name]
    for route in ("GET /instance/connect/{instance}", "POST /instance/restart/{instance}"):
        assert after.get(route, 0) == before.get(route, 0), route


async def test_evolution_outage_opens_the_breaker_and_blames_no_instance(
    runner: ServiceRunner, clock: MockClock
) -> None:
    service = await runner.start(**QUIET)
    users = [uuid.uuid4() for _ in range(200)]
    async with (
        http(service.url, SETUP_TIMEOUT_S) as client,
        http(service.simulator_url or "", SETUP_TIMEOUT_S) as sim,
    ):
        limiter = trio.CapacityLimiter(20)

        async def open_one(n: int, user: uuid.UUID) -> None:
            async with limiter:
                await open_instance(client, sim, user, f"55119{n:08d}", timeout=SETUP_TIMEOUT_S)

        async with trio.open_nursery() as nursery:
            for n, user in enumerate(users):
                nursery.start_soon(open_one, n, user)
        _virtual(clock, DENSE_TIMERS_THRESHOLD)
        watcher = user_token(users[0])
        ws_url = service.url.replace("http://", "ws://") + f"/ws?token={watcher}"
        async with open_websocket_url(ws_url) as ws:
            await next_frame(ws)
            await trio.sleep(120)  # every instance checked healthy at least once
            before = (await _requests(service))["total"]
            async with http(service.simulator_url or "") as sim:
                await sim_post_ok(sim, "/_sim/faults", {"mode": "down"})
            with trio.move_on_after(600):  # ten virtual minutes of outage
                note = await _notification(ws, 601)
                raise AssertionError(f"the outage was blamed on the instance: {note}")
            during = (await _requests(service))["total"] - before
            breaker = (await client.get("/readyz")).json()["evolution"]
            async with http(service.simulator_url or "") as sim:
                await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
            # Bound, for 2,000 health checks (6,000 requests with retries, unprotected):
            # 5 failed calls of 3 attempts open it (15), the calls already retrying then
            # stop at their next attempt (at 200 checks/min, about 10 of them: <= 30), and
            # one probe call of 3 attempts per 30 s + 3 s of retries (18 * 3 = 54).
            print(f"requests reaching Evolution during the 10-minute outage: {during}")
            assert during <= 100, during
            assert breaker["status"] == "open" and breaker["opened_count"] >= 1
            views = {}
            for user in users:
                views[user] = (
                    await client.get("/api/whatsapp/instance", headers=auth(user_token(user)))
                ).json()
            assert {v["health"]["status"] for v in views.values()} == {"error"}
            assert {v["health"]["consecutive_failures"] for v in views.values()} == {0}
            assert all(
                "Evolution API unreachable" in v["health"]["issues"][-1] for v in views.values()
            )

            await trio.sleep(150)  # the probe closes it; every instance is checked again
            statuses = set()
            for user in users:
                view = (
                    await client.get("/api/whatsapp/instance", headers=auth(user_token(user)))
                ).json()
                statuses.add((view["status"], view["health"]["status"]))
            assert statuses == {("open", "healthy")}
            assert (await client.get("/readyz")).json()["evolution"]["status"] == "closed"
            with trio.move_on_after(1):
                note = await _notification(ws, 2)
                raise AssertionError(f"unexpected notification {note}")


async def test_flaky_evolution_user_operations_still_succeed(
    runner: ServiceRunner, clock: MockClock
) -> None:
    # At 30 % failed attempts a call fails after n attempts with probability 0.3**n: 2.7 %
    # with the default 3 (about one user operation in 37), 6e-6 with 10.  The test takes
    # 10 so that "every operation succeeds" is a fact, not luck.
    # Waits capped at 2 s keep a whole operation (up to 10 attempts) inside the actor's 30 s
    # call timeout; the client below waits as long as the service may (virtual seconds).
    service = await runner.start(**QUIET, AUZAP_RETRY_ATTEMPTS="10", AUZAP_RETRY_MAX_S="2")
    _virtual(clock)
    async with http(service.simulator_url or "") as sim:
        await sim_post_ok(sim, "/_sim/faults", {"mode": "flaky", "error_rate": 0.3})
    async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
        for n in range(8):
            user = uuid.uuid4()
            token = user_token(user)
            sim_url = service.simulator_url or ""
            await open_instance(client, sim_url, user, f"55118{n:08d}", timeout=30)
            sent = await client.post(
                "/api/whatsapp/messages",
                headers=auth(token),
                json={"to": "5511955554444", "text": f"oi {n}"},
            )
            assert sent.status_code == 202, sent.text
    counts = await _requests(service)
    # 400/404 are answers, never retried: an unknown instance is asked about exactly once.
    async with http(service.simulator_url or "") as sim:
        await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
    evolution = service.actors.supervisor.deps.evolution
    before = (await _requests(service))["by_route"].get(
        "GET /instance/connectionState/{instance}", 0
    )
    with pytest.raises(EvolutionNotFound):
        await evolution.connection_state("user_nobody")
    after = (await _requests(service))["by_route"].get(
        "GET /instance/connectionState/{instance}", 0
    )
    assert after == before + 1
    assert counts["total"] > 0
