"""Staggered boot: 500 instances that should be connected at boot are resumed staggered:
the simulator never sees more concurrent connects than AUZAP_CONNECT_CONCURRENCY."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from auzap_actors.actors.messages import Barrier
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator
from auzap_actors.evolution.simulator.model import Instance, save_state
from auzap_actors.store.db import open_pool

from .conftest import SIM_API_KEY, ServiceRunner
from .helpers import eventually, http, sim_post_ok

COUNT = 500
LIMIT = 4


@pytest.fixture
async def crowded_simulator(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """A simulator that knows 500 instances whose sockets dropped while we were away
    (closed, credentials kept: a connect reopens them without a QR)."""
    users = [uuid.uuid4() for _ in range(COUNT)]
    names = [f"user_{u}" for u in users]
    state = tmp_path / "sim.json"
    save_state(
        state,
        {
            name: Instance(
                name=name,
                token=uuid.uuid4().hex.upper(),
                state="close",
                has_session=True,
                owner_jid=f"55117{n:08d}@s.whatsapp.net",
                number=f"55117{n:08d}",
                profile_name=f"Cliente {n}",
                disconnection_reason_code=428,
            )
            for n, name in enumerate(names)
        },
    )
    config = SimulatorConfig(api_key=SIM_API_KEY, state_file=state, reconnect_delay_s=0.05)
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_simulator, config)
        yield url, names
        nursery.cancel_scope.cancel()


async def test_boot_resumes_500_instances_with_bounded_connects(
    runner: ServiceRunner, crowded_simulator: tuple[str, list[str]]
) -> None:
    sim_url, names = crowded_simulator
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        users = [uuid.UUID(n.removeprefix("user_")) for n in names]
        await pool.execute("INSERT INTO auth.users (id) SELECT unnest($1::uuid[])", users)
        await pool.execute(
            "INSERT INTO whatsapp_instances (instance_name, user_id, status, is_connected,"
            " phone_number, evolution_instance_id)"
            " SELECT n, u, 'open', true, '55117' || lpad(i::text, 8, '0'), 'sim'"
            " FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS t(n, u, i)",
            names,
            users,
        )
    async with http(sim_url) as sim:
        # Slow answers make overlapping connects likely if anything let them overlap.
        await sim_post_ok(sim, "/_sim/faults", {"mode": "slow", "latency_ms": 20})
        service = await runner.start(
            EVOLUTION_API_URL=sim_url,
            AUZAP_CONNECT_CONCURRENCY=str(LIMIT),
            AUZAP_BOOT_CONCURRENCY="50",
        )
        supervisor = service.actors.supervisor

        def all_open() -> bool:
            handles = supervisor.children()
            return len(handles) == COUNT and all(
                h.snapshot is not None and h.snapshot.state.status.value == "open" for h in handles
            )

        route = "GET /instance/connect/{instance}"

        async def resumed() -> bool:
            # Each actor loads "open" from its row before its first look: wait for the connects.
            connects = (await sim.get("/_sim/requests")).json()["by_route"].get(route, 0)
            return bool(connects >= COUNT and all_open())

        await eventually(resumed, timeout=120, interval=0.2)
        # A barrier returns once the actor's boot (first look, resume) is over.
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(supervisor.call, name, Barrier(), 30)
        await eventually(all_open, timeout=60, interval=0.2)
        counts = (await sim.get("/_sim/requests")).json()
    print("peak in flight:", counts["peak_in_flight"])
    assert counts["by_route"][route] == COUNT, "each dropped instance resumed exactly once"
    assert 1 <= counts["peak_in_flight"][route] <= LIMIT, counts["peak_in_flight"]
    # Boot itself was staggered too: never all 500 look-ups at once.
    assert counts["peak_in_flight"]["GET /instance/fetchInstances"] <= 50
