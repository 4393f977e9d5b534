"""The whole service against a PostgreSQL that misbehaves while webhooks stream in: its sessions
killed, the server stopped for 4 s and started again, sessions killed once more (optionally
with Evolution down for 60 s at the same time), or the database read-only for 5 s.

The promise: a database outage is a non-event.  Senders behave like Evolution (re-send on 5xx
and timeouts, give up on 4xx).  No event gets a 4xx; every event answered 200 is applied exactly
once soon after recovery; no actor is parked or crashed; the first webhook after recovery is
stored and applied at once.  Run with `-s` to see the figures.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from auzap_actors.serve import Running

from .conftest import ADMIN_TOKEN, ServiceRunner
from .faultdb import DB, FaultPostgres, fault_db_fixture, fault_postgres_fixture  # noqa: F401
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, open_instance, sim_post_ok
from .payloads import envelope, text_message

INSTANCES = 4
SENDERS = 8


@dataclass
class Traffic:
    """What the senders saw."""

    acked: dict[str, float] = field(default_factory=dict)  # wa id -> when answered 200
    refused: list[tuple[str, int]] = field(default_factory=list)  # 4xx: lost for good
    retries: int = 0  # 5xx and timeouts, re-sent like Evolution does
    statuses: dict[int, int] = field(default_factory=dict)


async def _open_instances(service: Running, count: int) -> list[str]:
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        return [
            await open_instance(client, sim, uuid.uuid4(), f"5511900{n:06d}", timeout=20)
            for n in range(count)
        ]


def _event(name: str, wa_id: str, n: int) -> dict[str, Any]:
    return envelope(
        "messages.upsert",
        name,
        text_message(wa_id, f"55119{n:08d}@s.whatsapp.net", f"mensagem {n}"),
    )


async def _deliver(client: httpx.AsyncClient, body: dict[str, Any], traffic: Traffic) -> int:
    """Deliver like Evolution: re-send on 5xx and timeouts, stop at anything else."""
    while True:
        try:
            answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
        except httpx.TransportError:
            traffic.retries += 1
            await trio.sleep(0.1)
            continue
        traffic.statuses[answer.status_code] = traffic.statuses.get(answer.status_code, 0) + 1
        if answer.status_code < 500:
            return answer.status_code
        traffic.retries += 1
        await trio.sleep(0.1)


async def _stream(
    service: Running, names: list[str], stop: trio.Event, traffic: Traffic, ids: Any
) -> None:
    async with http(service.url, timeout=15) as client:

        async def sender() -> None:
            while not stop.is_set():
                n = next(ids)
                wa_id = f"3EB0{n:016X}"
                status = await _deliver(client, _event(names[n % len(names)], wa_id, n), traffic)
                if status == 200:
                    traffic.acked[wa_id] = trio.current_time()
                else:
                    traffic.refused.append((wa_id, status))
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            for _ in range(SENDERS):
                nursery.start_soon(sender)


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


async def _applied_counts(dsn: str, wa_ids: list[str]) -> dict[str, int]:
    rows = await fetch_rows(
        dsn,
        "SELECT wa_message_id, count(*) AS n FROM messages WHERE wa_message_id = ANY($1)"
        " GROUP BY wa_message_id",
        wa_ids,
    )
    return {r["wa_message_id"]: r["n"] for r in rows}


async def _all_applied(dsn: str, wa_ids: list[str]) -> bool:
    return len(await _applied_counts(dsn, wa_ids)) == len(wa_ids)


async def _tree(service: Running) -> dict[str, Any]:
    async with http(service.url) as client:
        answer = await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))
        assert answer.status_code == 200, answer.text
        tree: dict[str, Any] = answer.json()
        return tree


async def _wait_recovered(dsn: str, traffic: Traffic, since: float, within: float) -> float:
    """Seconds from `since` until every acknowledged event is applied (fails after `within`)."""
    await eventually(lambda: _all_applied(dsn, list(traffic.acked)), timeout=within, interval=0.2)
    return trio.current_time() - since


async def _evolution_down(service: Running, seconds: float, back: trio.Event) -> None:
    async with http(service.simulator_url or "") as sim:
        await sim_post_ok(sim, "/_sim/faults", {"mode": "down"})
        await trio.sleep(seconds)
        await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
    back.set()


@pytest.mark.parametrize("evolution_down", [False, True], ids=["evolution-up", "evolution-down"])
async def test_a_database_outage_is_a_non_event(
    fault_postgres: FaultPostgres,
    fault_db: str,
    tmp_path: Path,
    evolution_down: bool,
) -> None:
    ids = itertools.count()
    traffic = Traffic()
    async with trio.open_nursery() as nursery:
        runner = ServiceRunner(nursery, fault_db, tmp_path)
        # Health checks every 5 s: with Evolution down they meet it down too.
        service = await runner.start(AUZAP_HEALTH_INTERVAL_S="5")
        names = await _open_instances(service, INSTANCES)
        stop, evolution_back = trio.Event(), trio.Event()
        if evolution_down:
            nursery.start_soon(_evolution_down, service, 60.0, evolution_back)
        else:
            evolution_back.set()
        async with trio.open_nursery() as load:
            load.start_soon(_stream, service, names, stop, traffic, ids)
            await trio.sleep(1.0)
            killed_first = await _in_thread(fault_postgres.terminate_backends, DB)
            await trio.sleep(1.0)
            down_at = trio.current_time()
            await _in_thread(fault_postgres.stop)
            await trio.sleep(4.0)
            await _in_thread(fault_postgres.start)
            up_at = trio.current_time()
            (backlog,) = await fetch_rows(
                fault_db, "SELECT count(*) AS n FROM webhook_inbox WHERE applied_at IS NULL"
            )

            # The first webhook after recovery: stored at once, applied within 5 s.
            async with http(service.url) as client:
                first_id = "3EB0FFFFFFFFFFFF0001"
                first = await client.post(
                    "/api/webhook/whatsapp",
                    json=_event(names[0], first_id, 99_999),
                    headers=WEBHOOK_HEADERS,
                )
            first_status = first.status_code
            first_acked = trio.current_time()
            await eventually(lambda: _all_applied(fault_db, [first_id]), timeout=5, interval=0.1)
            first_applied_s = trio.current_time() - first_acked

            killed_second = await _in_thread(fault_postgres.terminate_backends, DB)
            await trio.sleep(2.0)
            stop.set()
        recovered_s = await _wait_recovered(fault_db, traffic, up_at, within=30)
        counts = await _applied_counts(fault_db, [*traffic.acked, first_id])
        await evolution_back.wait()  # no actor parked once Evolution's 60 s are over either
        tree = await _tree(service)
        print(
            f"\n{len(traffic.acked)} events acknowledged, {backlog['n']} of them stored but"
            f" not yet applied when the server came back,"
            f" {traffic.retries} re-sent after 5xx/timeouts, statuses {traffic.statuses};"
            f" sessions killed {killed_first} then {killed_second}; server down"
            f" {up_at - down_at:.1f} s; first webhook after recovery {first_status},"
            f" applied in {first_applied_s:.2f} s; all applied {recovered_s:.1f} s after"
            f" recovery; Evolution down 60 s: {evolution_down}"
        )
        await runner.stop()
        nursery.cancel_scope.cancel()

    assert traffic.refused == [], "no event may get a 4xx"
    assert first_status == 200
    assert first_applied_s < 5.0
    assert recovered_s < 30.0
    assert set(counts) == {*traffic.acked, first_id}
    assert set(counts.values()) == {1}, "every acknowledged event applied exactly once"
    assert len(traffic.acked) > 50
    actors = {a["instance_name"]: a for a in tree["actors"]}
    assert sorted(actors) == sorted(names)
    for entry in actors.values():
        assert entry["actor"] == "running", entry
        assert entry["restarts"] == 0 and entry["parkings"] == 0, entry
        assert entry["failed_rows"] == {"count": 0, "latest": []}, entry


async def test_a_read_only_database_gets_503_never_400(
    fault_postgres: FaultPostgres, fault_db: str, tmp_path: Path
) -> None:
    ids = itertools.count()
    traffic = Traffic()
    async with trio.open_nursery() as nursery:
        runner = ServiceRunner(nursery, fault_db, tmp_path)
        service = await runner.start()
        names = await _open_instances(service, 2)
        stop = trio.Event()
        async with trio.open_nursery() as load:
            load.start_soon(_stream, service, names, stop, traffic, ids)
            await trio.sleep(1.0)
            await _in_thread(fault_postgres.set_read_only, DB, True)
            await trio.sleep(5.0)
            await _in_thread(fault_postgres.set_read_only, DB, False)
            writable_at = trio.current_time()
            await trio.sleep(1.0)
            stop.set()
        recovered_s = await _wait_recovered(fault_db, traffic, writable_at, within=30)
        counts = await _applied_counts(fault_db, list(traffic.acked))
        tree = await _tree(service)
        print(
            f"\nread-only 5 s: {len(traffic.acked)} acknowledged, statuses {traffic.statuses};"
            f" all applied {recovered_s:.1f} s after writes were allowed again"
        )
        await runner.stop()
        nursery.cancel_scope.cancel()
    assert traffic.refused == []
    assert traffic.statuses.get(503, 0) > 0, "the read-only spell must have been felt"
    assert set(counts.values()) == {1} and len(counts) == len(traffic.acked)
    assert all(a["actor"] == "running" and a["restarts"] == 0 for a in tree["actors"])
