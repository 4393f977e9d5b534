"""The census: one `GET /instance/fetchInstances` of every instance answering the periodic
checks of healthy instances (evolution/census.py), against the simulator over real HTTP;
and which checks the core step lets it answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio

from auzap_actors.actors import evolution_side
from auzap_actors.actors.deps import ActorDeps
from auzap_actors.actors.hub import Hub
from auzap_actors.core.health import HealthPolicy, HealthState
from auzap_actors.core.instance import Boot, Observed, Persist, RunCheck, Tick, step
from auzap_actors.core.state import InstanceState, Status
from auzap_actors.core.views import InstanceSnapshot
from auzap_actors.evolution import EvolutionClient, WebhookConfig
from auzap_actors.evolution.census import Census
from auzap_actors.evolution.retry import RetryPolicy
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator

from .helpers import open_snapshot, sim_post_ok

API_KEY = "census-key"
NO_RETRY = RetryPolicy(attempts=1)
OPEN = [f"open-{i}" for i in range(4)]
CLOSED = ["closed-0", "closed-1"]
HOOK = WebhookConfig(url="http://127.0.0.1:9/hook", events=("CONNECTION_UPDATE",))
# Evolution's Prisma Instance row (evolution-api-v2.md §2.5): these fields, no v1 wrapper.
ROW_FIELDS = {
    "id",
    "name",
    "connectionStatus",
    "ownerJid",
    "profileName",
    "profilePicUrl",
    "integration",
    "number",
    "businessId",
    "token",
    "clientName",
    "disconnectionReasonCode",
    "disconnectionObject",
    "disconnectionAt",
    "createdAt",
    "updatedAt",
    "Chatwoot",
    "Proxy",
    "Rabbitmq",
    "Nats",
    "Sqs",
    "Websocket",
    "Setting",
    "_count",
}


@pytest.fixture
async def sim(nursery: trio.Nursery) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    config = SimulatorConfig(
        api_key=API_KEY, webhook_timeout_s=0.5, webhook_retry_attempts=1, ack_delay_s=0.01
    )
    url: str = await nursery.start(serve_simulator, config)
    async with (
        httpx.AsyncClient(base_url=url) as control,
        EvolutionClient(url, API_KEY, retry=NO_RETRY) as client,
    ):
        for name in OPEN + CLOSED:
            await client.create_instance(name, webhook=HOOK)
        for i, name in enumerate(OPEN):
            await client.connect(name)
            await sim_post_ok(control, f"/_sim/instances/{name}/scan", {"phone": f"55119{i:08d}"})
        yield url, control


async def _requests(control: httpx.AsyncClient) -> dict[str, int]:
    body: dict[str, Any] = (await control.get("/_sim/requests")).json()
    return dict(body["by_route"])


async def test_unfiltered_fetch_instances_answers_every_row_as_the_docs_say(
    sim: tuple[str, httpx.AsyncClient],
) -> None:
    url, _ = sim
    async with httpx.AsyncClient(base_url=url, headers={"apikey": API_KEY}) as http:
        rows = (await http.get("/instance/fetchInstances")).json()
        assert isinstance(rows, list) and {r["name"] for r in rows} == set(OPEN + CLOSED)
        assert all(set(r) == ROW_FIELDS for r in rows)
        status = {r["name"]: r["connectionStatus"] for r in rows}
        assert all(status[n] == "open" for n in OPEN) and status["closed-0"] == "close"
        one = (await http.get("/instance/fetchInstances", params={"instanceName": OPEN[0]})).json()
        assert [r["name"] for r in one] == [OPEN[0]]
        unknown = await http.get("/instance/fetchInstances", params={"instanceName": "nope"})
        assert unknown.status_code == 404


async def test_one_census_answers_many_checks_and_is_taken_again_when_old(
    sim: tuple[str, httpx.AsyncClient],
) -> None:
    url, control = sim
    async with EvolutionClient(url, API_KEY, retry=NO_RETRY) as client:
        census = Census(client.fetch_instances, max_age_s=0.5)
        before = (await _requests(control)).get("GET /instance/fetchInstances", 0)
        answers: dict[str, str | None] = {}

        async def ask(name: str) -> None:
            answers[name] = await census.status(name)

        async with trio.open_nursery() as nursery:
            for name in OPEN + CLOSED + ["unknown"]:
                nursery.start_soon(ask, name)
        assert census.taken == 1  # the concurrent checks shared one call
        assert (await _requests(control))["GET /instance/fetchInstances"] == before + 1
        assert answers == {**dict.fromkeys(OPEN, "open"), **dict.fromkeys(CLOSED, "close")} | {
            "unknown": None
        }
        await census.status(OPEN[0])
        assert census.taken == 1  # still fresh
        await trio.sleep(0.6)
        await census.status(OPEN[0])
        assert census.taken == 2

        await sim_post_ok(control, "/_sim/faults", {"mode": "down"})
        await trio.sleep(0.6)
        assert await census.status(OPEN[0]) is None  # no fresh census: check alone
        assert await census.status(OPEN[1]) is None
        down = (await _requests(control))["GET /instance/fetchInstances"]
        assert down == before + 3  # one failed try, not one per check


async def test_only_an_open_is_taken_from_the_census(sim: tuple[str, httpx.AsyncClient]) -> None:
    url, control = sim
    async with EvolutionClient(url, API_KEY, retry=NO_RETRY) as client:
        deps = ActorDeps(
            pool=None,
            evolution=client,
            hub=Hub(),
            webhook_secret="s" * 32,
            census=Census(client.fetch_instances, max_age_s=60),
        )
        shared = RunCheck("periodic", full=False, shared=True)
        seen = await evolution_side.observe(deps, OPEN[0], shared)
        assert (seen.connection_state, seen.unreachable, seen.census) == ("open", None, True)
        await sim_post_ok(
            control, f"/_sim/instances/{OPEN[1]}/disconnect", {"code": 428, "auto_reconnect": False}
        )
        # The census (taken before the drop) still says open for OPEN[1]: a stale good answer
        # lasts at most max_age.  A closed one in the census is looked at alone.
        before = await _requests(control)
        seen = await evolution_side.observe(deps, CLOSED[0], shared)
        assert seen.connection_state == "close"
        after = await _requests(control)
        route = "GET /instance/connectionState/{instance}"
        assert after.get(route, 0) == before.get(route, 0) + 1
        # A check not marked shared (a failing instance's) always asks Evolution.
        seen = await evolution_side.observe(deps, OPEN[1], RunCheck("periodic", full=False))
        assert seen.connection_state in ("close", "connecting")


def test_the_step_shares_only_periodic_checks_of_healthy_instances() -> None:
    policy = HealthPolicy(interval_s=60)
    healthy = open_snapshot()

    def check(snap: InstanceSnapshot, item: Tick | Boot | None = None) -> RunCheck:
        _, effects = step(snap, item or Tick(), 1000.0, policy, 0.5)
        found = [e for e in effects if isinstance(e, RunCheck)]
        assert len(found) == 1
        return found[0]

    assert check(healthy).shared
    # A boot's look too, whatever the health loaded (an open is all it takes from a census).
    failing = HealthState(status="unhealthy", consecutive_failures=2)
    assert check(replace(healthy, health=failing), Boot()).shared
    for health in (
        HealthState(status="unhealthy", consecutive_failures=1),
        HealthState(status="healthy", reconnecting=True),
    ):
        assert not check(replace(healthy, health=health)).shared
    # A webhook said the connection dropped: a census (maybe older than that news) must not
    # answer, for a periodic check nor at boot.
    dropped = replace(healthy, state=InstanceState(Status.CONNECTING))
    assert not check(dropped).shared
    assert not check(dropped, Boot()).shared


def test_an_unchanged_check_writes_nothing_a_changed_one_is_written_first() -> None:
    """Health is persisted when a reader needs the change (status, failures), not for a new
    `last_check_at`: 10,000 healthy instances' checks write no row."""
    policy = HealthPolicy(interval_s=60)
    snap = open_snapshot(HealthState(status="healthy", healthy_since=0.0, last_check_at=900.0))
    same, effects = step(snap, Observed("periodic", "open"), 1000.0, policy, 0.5)
    assert Persist() not in effects
    assert same.health.last_check_at == 1000.0  # kept in memory for the views
    failed, effects = step(same, Observed("periodic", "connecting"), 1060.0, policy, 0.5)
    assert effects[0] == Persist()
    assert (failed.health.status, failed.health.consecutive_failures) == ("unhealthy", 1)
