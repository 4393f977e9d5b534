"""The connect flow end to end (connect, QR, scan, open; twenty concurrent connects make one
instance; a restart resumes, reconciles, or respects a logout), over real HTTP and WebSockets,
against real PostgreSQL and the Evolution simulator started as a separate server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from auzap_actors.actors.messages import Barrier
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator
from auzap_actors.serve import Running
from auzap_actors.store.db import open_pool

from .conftest import SIM_API_KEY, ServiceRunner
from .helpers import (
    PNG_SIGNATURE,
    auth,
    decode_png_data_url,
    eventually,
    http,
    next_frame,
    open_instance,
    sim_post_ok,
    user_token,
    wait_frame,
)


@pytest.fixture
async def simulator_url() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(
            serve_simulator, SimulatorConfig(api_key=SIM_API_KEY, webhook_retry_initial_s=0.05)
        )
        yield url
        nursery.cancel_scope.cancel()


async def _sim_requests(sim: str) -> dict[str, Any]:
    async with http(sim) as client:
        body: dict[str, Any] = (await client.get("/_sim/requests")).json()
        return body


def _actor_status(service: Running, name: str) -> str | None:
    handle = service.actors.supervisor.get(name)
    if handle is None or handle.snapshot is None:
        return None
    return handle.snapshot.state.status.value


async def test_connect_scan_connected(runner: ServiceRunner, simulator_url: str) -> None:
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with open_websocket_url(ws_url) as ws, http(service.url) as client:
        first = await next_frame(ws)
        assert first == {"type": "snapshot", "data": None}

        answer = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert answer.status_code == 200, answer.text
        instance = answer.json()["instance"]
        assert instance["instance_name"] == name and instance["user_id"] == str(user)

        qr = await wait_frame(ws, lambda f: f["type"] == "qrcode")
        assert qr["data"]["instanceName"] == name and qr["data"]["status"] == "waiting_qr"
        assert decode_png_data_url(qr["data"]["qrCode"]).startswith(PNG_SIGNATURE)

        async with http(simulator_url) as sim:
            scan = await sim.post(f"/_sim/instances/{name}/scan", json={"phone": "5511912345678"})
            assert scan.status_code == 200, scan.text

        status = await wait_frame(
            ws, lambda f: f["type"] == "status" and f["data"]["status"] == "open"
        )
        assert status["data"] == {
            "instance_name": name,
            "status": "open",
            "is_connected": True,
            "phone_number": "5511912345678",
        }
        note = await wait_frame(ws, lambda f: f["type"] == "notification")
        assert note["data"]["level"] == "info" and "connected" in note["data"]["title"].lower()

        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["status"] == "open" and view["is_connected"] is True
        assert view["phone_number"] == "5511912345678" and view["qr_code"] is None
        assert view["health"]["status"] == "healthy"

    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        row = await pool.fetchrow(
            "SELECT status, is_connected, phone_number, qr_code, user_id::text"
            " FROM whatsapp_instances WHERE instance_name = $1",
            name,
        )
    assert dict(row.items()) == {
        "status": "open",
        "is_connected": True,
        "phone_number": "5511912345678",
        "qr_code": None,
        "user_id": str(user),
    }


async def test_twenty_concurrent_connects_make_one_instance(
    runner: ServiceRunner, simulator_url: str
) -> None:
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    user = uuid.uuid4()
    token = user_token(user)
    statuses: list[int] = []
    async with http(service.url) as client:

        async def connect() -> None:
            answer = await client.post("/api/whatsapp/connect", headers=auth(token))
            statuses.append(answer.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(connect)
    assert statuses == [200] * 20
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        rows = await pool.fetchval(
            "SELECT count(*) FROM whatsapp_instances WHERE user_id = $1", user
        )
    assert rows == 1
    counts = await _sim_requests(simulator_url)
    assert counts["by_route"].get("POST /instance/create") == 1


async def test_restart_comes_back_open_and_reconciles(
    runner: ServiceRunner, simulator_url: str
) -> None:
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    async with http(service.url) as client:
        assert await open_instance(client, simulator_url, user, "5511900001111") == name
    route = "GET /instance/fetchInstances"
    before = (await _sim_requests(simulator_url))["by_route"].get(route, 0)
    await runner.stop()

    service = await runner.start(EVOLUTION_API_URL=simulator_url)

    async def reconciled() -> bool:
        # The actor's first look at start reads fetchInstances (it tells a logout from a drop).
        after = (await _sim_requests(simulator_url))["by_route"].get(route, 0)
        return bool(after == before + 1)

    await eventually(reconciled)
    await eventually(lambda: _actor_status(service, name) == "open")
    async with http(service.url) as client:
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
    assert view["status"] == "open" and view["phone_number"] == "5511900001111"
    handle = service.actors.supervisor.get(name)
    assert handle is not None and handle.status == "running"


async def _open_then_stop(runner: ServiceRunner, simulator_url: str) -> tuple[str, str]:
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client:
        name = await open_instance(client, simulator_url, user, "5511900002222")
    await eventually(lambda: _actor_status(service, name) == "open")
    await runner.stop()
    return name, token


async def test_restart_resumes_a_session_dropped_while_down(
    runner: ServiceRunner, simulator_url: str
) -> None:
    name, token = await _open_then_stop(runner, simulator_url)
    # While we are down the socket drops and Evolution does not bring it back by itself.
    async with http(simulator_url) as sim:
        answer = await sim.post(
            f"/_sim/instances/{name}/disconnect", json={"code": 428, "auto_reconnect": False}
        )
        assert answer.status_code == 200, answer.text
        before = (await sim.get("/_sim/requests")).json()["by_instance"][name]
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    # The actor loads "open" from its row at once; its first look and the resume run before it
    # reads its mailbox, so a barrier returns only after both.
    await service.actors.supervisor.call(name, Barrier(), 10)
    async with http(simulator_url) as sim:
        after = (await sim.get("/_sim/requests")).json()["by_instance"][name]
    route = "GET /instance/connect/{instance}"
    assert after.get(route, 0) == before.get(route, 0) + 1, "resumed once at start"
    async with http(service.url) as client:

        async def open_and_healthy() -> dict[str, Any] | None:
            view: dict[str, Any] = (
                await client.get("/api/whatsapp/instance", headers=auth(token))
            ).json()
            # Never "open" beside a failed check: state and health change in one snapshot.
            assert view["status"] != "open" or view["health"]["status"] == "healthy", view
            return view if view["status"] == "open" else None

        view = await eventually(open_and_healthy)
    assert view["phone_number"] == "5511900002222"


async def test_restart_after_a_logout_while_down_does_not_reconnect(
    runner: ServiceRunner, simulator_url: str
) -> None:
    name, token = await _open_then_stop(runner, simulator_url)
    async with http(simulator_url) as sim:
        answer = await sim.post(f"/_sim/instances/{name}/disconnect", json={"code": 401})
        assert answer.status_code == 200, answer.text
        before = (await sim.get("/_sim/requests")).json()["by_instance"][name]
    service = await runner.start(EVOLUTION_API_URL=simulator_url)
    async with http(service.url) as client:

        async def logged_out() -> dict[str, Any] | None:
            view: dict[str, Any] = (
                await client.get("/api/whatsapp/instance", headers=auth(token))
            ).json()
            return view if view["status"] == "disconnected" else None

        view = await eventually(logged_out)
    assert view["is_connected"] is False and view["phone_number"] is None
    assert view["health"]["status"] == "disconnected"
    async with http(simulator_url) as sim:
        after = (await sim.get("/_sim/requests")).json()["by_instance"][name]
    route = "GET /instance/connect/{instance}"
    assert after.get(route, 0) == before.get(route, 0), "no reconnect after a logout"


async def test_with_the_simulator_started_from_the_command_line(runner: ServiceRunner) -> None:
    """The simulator as users start it: `auzap-actors evolution-sim` in its own process."""
    command = [
        sys.executable,
        "-m",
        "auzap_actors",
        "evolution-sim",
        "--port",
        "0",
        "--api-key",
        SIM_API_KEY,
    ]
    sim_process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert sim_process.stdout is not None
        output = b""
        with trio.fail_after(30):
            while b"\n" not in output:
                output += await sim_process.stdout.receive_some()
        line = output.decode().splitlines()[0]
        assert "listening on" in line, line
        sim_url = line.rsplit(" ", 1)[1].strip()
        service = await runner.start(EVOLUTION_API_URL=sim_url)
        user = uuid.uuid4()
        token = user_token(user)
        ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
        async with open_websocket_url(ws_url) as ws, http(service.url) as client:
            await next_frame(ws)
            connect = await client.post("/api/whatsapp/connect", headers=auth(token))
            assert connect.status_code == 200
            qr = await wait_frame(ws, lambda f: f["type"] == "qrcode")
            assert decode_png_data_url(qr["data"]["qrCode"]).startswith(PNG_SIGNATURE)
            async with http(sim_url) as sim:
                await sim_post_ok(
                    sim, f"/_sim/instances/user_{user}/scan", {"phone": "5511944440000"}
                )
            await wait_frame(ws, lambda f: f["type"] == "status" and f["data"]["status"] == "open")
        await runner.stop()
    finally:
        sim_process.terminate()
        await sim_process.wait()
        if sim_process.stdout is not None:
            await sim_process.stdout.aclose()
