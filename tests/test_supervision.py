"""Supervision in the running service: a crashing actor restarts (count visible), its
siblings never notice, past its budget it is parked, and the service keeps serving; operators
stop and start actors."""

from __future__ import annotations

import uuid
from typing import Any

from auzap_actors.actors.messages import Crash
from auzap_actors.core.supervision import RestartPolicy
from auzap_actors.serve import Running

from .conftest import ADMIN_TOKEN, ServiceRunner
from .helpers import auth, eventually, http, open_instance, user_token


async def _tree_entry(client: Any, name: str) -> dict[str, Any]:
    tree = (await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))).json()
    entries: dict[str, dict[str, Any]] = {e["instance_name"]: e for e in tree["actors"]}
    return entries[name]


async def test_crash_restart_budget_and_isolation(runner: ServiceRunner) -> None:
    service = await runner.start()
    supervisor = service.actors.supervisor
    supervisor.policy = RestartPolicy(max_restarts=3, window_s=60, backoff_base_s=0.01)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with http(service.url) as client:
        a = await open_instance(client, service.simulator_url or "", alice, "5511911110000")
        b = await open_instance(client, service.simulator_url or "", bob, "5511922220000")
        bob_handle = supervisor.get(b)
        assert bob_handle is not None

        supervisor.cast(a, Crash("test: first crash"))

        async def restarted_once() -> bool:
            entry = await _tree_entry(client, a)
            return bool(entry["restarts"] == 1 and entry["actor"] == "running")

        await eventually(restarted_once)
        entry = await _tree_entry(client, a)
        assert "InjectedCrash" in entry["last_error"] and entry["status"] == "open"
        # The restarted actor came back from the database: still open, still the same phone.
        view = (await client.get("/api/whatsapp/instance", headers=auth(user_token(alice)))).json()
        assert view["status"] == "open" and view["phone_number"] == "5511911110000"

        # Past the budget (3 restarts within the window) the actor is parked.
        for n in range(3):
            supervisor.cast(a, Crash(f"test: crash {n + 2}"))
            if n < 2:
                await eventually(
                    lambda n=n: _restarts(service, a) == n + 2 and _running(service, a)
                )

        async def parked() -> bool:
            return bool((await _tree_entry(client, a))["actor"] == "crashed")

        await eventually(parked)
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(alice)))
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "actor_unavailable"
        assert answer.headers["Retry-After"]

        # Bob never noticed: same actor object, no restarts, still serving.
        assert supervisor.get(b) is bob_handle and bob_handle.restarts == 0
        assert (await _tree_entry(client, b))["actor"] == "running"
        view = (await client.get("/api/whatsapp/instance", headers=auth(user_token(bob)))).json()
        assert view["status"] == "open"
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200

        # An operator revives the parked actor.
        revived = await client.post(f"/admin/instances/{a}/restart", headers=auth(ADMIN_TOKEN))
        assert revived.status_code == 200 and revived.json()["actor"] == "running"
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(alice)))
        assert answer.status_code == 200 and answer.json()["instance"]["status"] == "open"


def _restarts(service: Running, name: str) -> int:
    handle = service.actors.supervisor.get(name)
    return handle.restarts if handle else -1


def _running(service: Running, name: str) -> bool:
    handle = service.actors.supervisor.get(name)
    return handle is not None and handle.status == "running"


async def test_operator_stop_and_start(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url or "", user, "5511933330000")
        stopped = await client.post(f"/admin/instances/{name}/stop", headers=auth(ADMIN_TOKEN))
        assert stopped.status_code == 200 and stopped.json()["actor"] == "stopped"
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 503
        started = await client.post(f"/admin/instances/{name}/start", headers=auth(ADMIN_TOKEN))
        assert started.status_code == 200 and started.json()["actor"] == "running"
        missing = await client.post("/admin/instances/user_nobody/stop", headers=auth(ADMIN_TOKEN))
        assert missing.status_code == 404
