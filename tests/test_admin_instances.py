"""`GET /admin/instances` (every instance the database knows, keyset pages, filters, live actor
state merged in) and `GET /admin/instances/<name>` (health history, inbox backlog and failed
rows, recent Evolution calls), and `/admin/tree`'s CONTRACT §6 fields, on the running service."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from auzap_actors.store.db import open_pool

from .conftest import ADMIN_TOKEN, SIM_API_KEY, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, http, open_instance, user_token
from .payloads import envelope, text_message
from .test_inbox_rows import POISON

ADMIN = auth(ADMIN_TOKEN)


async def _all_pages(client: httpx.AsyncClient, query: str, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"/admin/instances?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = await client.get(url, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["instances"]) <= limit
        found += page["instances"]
        cursor = page["next"]
        if cursor is None:
            return found


async def test_instances_list_pages_filters_and_covers_instances_without_an_actor(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    users = [(uuid.uuid4(), org_a), (uuid.uuid4(), org_a), (uuid.uuid4(), org_b)]
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        names = []
        for n, (user, org) in enumerate(users):
            names.append(await open_instance(client, sim, user, f"55119000000{n:02d}", org=org))
        # One user connects without scanning: waiting for the QR.
        waiting_user = uuid.uuid4()
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(waiting_user)))
        assert answer.status_code == 200
        waiting = f"user_{waiting_user}"
        # A legacy row no actor runs for (no user, a name not of ours), added behind the
        # service's back, and an instance whose actor an operator stopped.
        async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
            await pool.execute(
                "INSERT INTO whatsapp_instances (instance_name, status) VALUES ('legacy-7', 'open')"
            )
        stopped = await client.post(f"/admin/instances/{names[2]}/stop", headers=ADMIN)
        assert stopped.status_code == 200

        everything = await _all_pages(client, "", limit=2)
        listed = [i["instance_name"] for i in everything]
        assert listed == sorted([*names, waiting, "legacy-7"])
        by_name = {i["instance_name"]: i for i in everything}
        assert by_name["legacy-7"]["actor"] is None and by_name["legacy-7"]["user_id"] is None
        assert by_name[names[2]]["actor"]["actor"] == "stopped"
        live = by_name[names[0]]
        assert live["actor"]["actor"] == "running" and live["status"] == "open"
        assert live["actor"]["mailbox"].keys() == {"size", "capacity", "peak"}
        assert live["organization_id"] == str(org_a) and live["health"]["status"] == "healthy"
        assert by_name[waiting]["status"] == "waiting_qr"

        in_a = await _all_pages(client, f"&organization_id={org_a}", limit=1)
        assert {i["instance_name"] for i in in_a} == {names[0], names[1]}
        opened = await _all_pages(client, "&status=open", limit=50)
        assert {i["instance_name"] for i in opened} == {*names, "legacy-7"}
        qr = await _all_pages(client, "&state=waiting_qr", limit=50)
        assert [i["instance_name"] for i in qr] == [waiting]
        healthy_b = await _all_pages(
            client, f"&health=healthy&organization_id={org_b}&status=open", limit=50
        )
        assert [i["instance_name"] for i in healthy_b] == [names[2]]

        for bad in (
            "limit=0",
            "limit=201",
            "limit=x",
            "status=bogus",
            "health=bogus",
            "organization_id=not-a-uuid",
            "cursor=%%%",
            "status=open&state=waiting_qr",
        ):
            answer = await client.get(f"/admin/instances?{bad}", headers=ADMIN)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["error"]["code"].startswith("invalid_")
        assert (await client.get("/admin/instances")).status_code == 401
        user_bearer = auth(user_token(users[0][0]))
        assert (await client.get("/admin/instances", headers=user_bearer)).status_code == 401
        assert (await client.get(f"/admin/instances/{names[0]}")).status_code == 401

        # /admin/tree: CONTRACT §6's fields and README's.
        tree = (await client.get("/admin/tree", headers=ADMIN)).json()
        node = tree["node"]
        assert {"id", "started_at", "leases"} <= node.keys()
        assert node["leases"]["held"] == len(names) + 1
        assert {"running", "restart_policy", "children", "evolution_breaker"} <= tree[
            "supervisor"
        ].keys()
        for entry in tree["actors"]:
            assert {
                "instance_name",
                "status",
                "mailbox",
                "restarts",
                "last_error",
                "health",
                "owner_node",
                "lease_epoch",
                "actor",
                "parkings",
                "revive_at",
                "failed_rows",
            } <= entry.keys()
            assert entry["owner_node"] == node["id"]


async def test_instance_detail_health_history_backlog_failed_rows_and_evolution_calls(
    runner: ServiceRunner,
) -> None:
    service = await runner.start(AUZAP_HEALTH_INTERVAL_S="0.3")
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(POISON)
    user = uuid.uuid4()
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        name = await open_instance(client, sim, user, "5511977770000")

        async def detail() -> dict[str, Any]:
            answer = await client.get(f"/admin/instances/{name}", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found

        async def checked_three_times() -> bool:
            return len((await detail())["health_history"]) >= 3

        await eventually(checked_three_times, timeout=10)
        # A poisoned event: retried, then settled as failed.
        poison = envelope(
            "messages.upsert", name, text_message("POISON", "5511988000001@s.whatsapp.net", "x")
        )
        posted = await client.post(
            "/api/webhook/whatsapp",
            json=poison,
            headers={**WEBHOOK_HEADERS, "X-Request-Id": "poison-delivery-1"},
        )
        assert posted.status_code == 200 and posted.headers["X-Request-Id"] == "poison-delivery-1"

        async def failed_once() -> bool:
            return bool((await detail())["inbox"]["failed"]["count"] == 1)

        await eventually(failed_once, timeout=15)
        found = await detail()
        assert found["instance"]["instance_name"] == name
        assert found["instance"]["status"] == "open"
        assert found["actor"]["actor"] == "running"
        history = found["health_history"]
        assert all(h["result"] == "open" and h["health"] == "healthy" for h in history)
        assert {h["purpose"] for h in history} <= {"periodic", "boot", "reconcile"}
        assert [h["at"] for h in history] == sorted(h["at"] for h in history)
        assert len(history) <= 20
        (failed,) = found["inbox"]["failed"]["latest"]
        assert failed["event"] == "messages.upsert" and "poisoned" in failed["error"]
        # The failed row carries the id of the request that delivered it.
        assert failed["request_id"] == "poison-delivery-1"
        assert found["inbox"]["pending"] == 0 and found["inbox"]["oldest_pending_age_s"] is None
        calls = found["evolution_calls"]
        assert 1 <= len(calls) <= 20
        endpoints = {c["endpoint"] for c in calls}
        # Its checks: its own calls, or answered by the node's census (not a call about it).
        assert endpoints & {
            "/instance/connectionState/{instance}",
            "/instance/fetchInstances",
        } or {h["source"] for h in history} == {"census"}
        assert all(c["outcome"] == "ok" and c["status"] in (200, 201) for c in calls)
        assert all(c["duration_ms"] >= 0 and c["attempts"] >= 1 for c in calls)
        text = json.dumps(found)
        assert SIM_API_KEY not in text and name not in json.dumps(calls)

        # A backlog: the actor stopped, two events wait.
        assert (await client.post(f"/admin/instances/{name}/stop", headers=ADMIN)).is_success
        for n in range(2):
            body = envelope(
                "messages.upsert",
                name,
                text_message(f"3EB0BB0{n}", "5511988000002@s.whatsapp.net", f"espera {n}"),
            )
            posted = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert posted.status_code == 200
        found = await detail()
        assert found["inbox"]["pending"] == 2 and found["inbox"]["oldest_pending_age_s"] >= 0
        assert found["actor"]["actor"] == "stopped"
        # History survives the stop (it belongs to the service, not to the actor's task).
        assert len(found["health_history"]) >= 3

        missing = await client.get("/admin/instances/user_nobody", headers=ADMIN)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
