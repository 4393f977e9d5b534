"""Many instances booting at once: the node-wide boot gate and the Evolution client's lanes
(a request's timeout runs from when it holds a connection, not from its wait in the queue).

Against the simulator over real HTTP, slowed down with its `slow` fault so that calls
overlap."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from auzap_actors.actors import evolution_side
from auzap_actors.actors.deps import ActorDeps
from auzap_actors.actors.hub import Hub
from auzap_actors.core.instance import RunCheck
from auzap_actors.evolution import EvolutionClient, EvolutionUnavailable
from auzap_actors.evolution.retry import RetryPolicy
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator

from .helpers import sim_post_ok

API_KEY = "boot-gate-key"
NO_RETRY = RetryPolicy(attempts=1)
NAMES = [f"gate-{i}" for i in range(12)]


class CountingClient(EvolutionClient):
    """The real client, counting the calls in flight (the most at once, by kind)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.most = 0

    async def _request(self, *args: Any, **kwargs: Any) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await super()._request(*args, **kwargs)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def sim_url(nursery: trio.Nursery) -> str:
    config = SimulatorConfig(api_key=API_KEY, webhook_timeout_s=0.5, webhook_retry_attempts=1)
    url: str = await nursery.start(serve_simulator, config)
    return url


async def _deps(client: EvolutionClient, gate: int) -> ActorDeps:
    deps = ActorDeps(
        pool=None,
        evolution=client,
        hub=Hub(),
        webhook_secret="s" * 32,
        webhook_base_url="http://127.0.0.1:9",  # nobody listens: deliveries just fail
        boot_gate=trio.CapacityLimiter(gate),
    )
    for name in NAMES:
        await client.create_instance(name, webhook=deps.webhook_config(name))
    return deps


async def test_boot_gate_bounds_the_boot_calls_not_the_periodic_ones(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with CountingClient(sim_url, API_KEY, retry=NO_RETRY) as client:
        deps = await _deps(client, gate=3)
        await sim_post_ok(control, "/_sim/faults", {"mode": "slow", "latency_ms": 60})
        observed: list[Any] = []

        async def boot(name: str) -> None:
            assert await evolution_side.sync_webhook(deps, name)
            observed.append(await evolution_side.observe(deps, name, RunCheck("boot", False)))

        async with trio.open_nursery() as nursery:
            for name in NAMES:
                nursery.start_soon(boot, name)
        assert client.most == 3  # reached, never passed
        assert len(observed) == len(NAMES)
        assert all(o.connection_state == "close" and o.unreachable is None for o in observed)

        client.most = 0
        async with trio.open_nursery() as nursery:
            for name in NAMES:
                nursery.start_soon(evolution_side.observe, deps, name, RunCheck("periodic", False))
        assert client.most == len(NAMES)  # periodic checks never wait at the boot gate


async def test_timeout_counts_from_the_request_not_the_queue(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    """One lane, 0.2 s per answer, a 0.5 s timeout: five checks queued together all answer
    (the last after ~1 s), none is reported unreachable for its wait."""
    async with EvolutionClient(sim_url, API_KEY, retry=NO_RETRY, timeout=0.5, lanes=1) as client:
        await _deps(client, gate=1)
        await sim_post_ok(control, "/_sim/faults", {"mode": "slow", "latency_ms": 200})
        states: list[str] = []

        async def check(name: str) -> None:
            states.append(await client.connection_state(name))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in NAMES[:5]:
                nursery.start_soon(check, name)
        assert states == ["close"] * 5
        assert trio.current_time() - started >= 1.0  # they did queue, one at a time


async def test_a_bounded_wait_for_a_lane_fails_as_not_sent(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with EvolutionClient(
        sim_url, API_KEY, retry=NO_RETRY, timeout=5, lanes=1, queue_wait_s=0.1
    ) as client:
        await _deps(client, gate=1)
        await sim_post_ok(control, "/_sim/faults", {"mode": "slow", "latency_ms": 400})
        failures: list[EvolutionUnavailable] = []

        async def check(name: str) -> None:
            try:
                await client.connection_state(name)
            except EvolutionUnavailable as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(check, NAMES[0])
            await trio.sleep(0.05)  # the first holds the only lane
            nursery.start_soon(check, NAMES[1])
        assert len(failures) == 1
        assert not failures[0].request_sent  # safe to repeat even a create or a send
        assert "no connection free" in str(failures[0])
