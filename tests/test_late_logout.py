"""A deleted instance's logout arrives late (Evolution logs out asynchronously, evolution-api-v2.md
§2.8, §5.4): it must reach neither the deleted instance's ending actor nor the instance that
replaced it under the same name, while a real logout of the new session still tells the user.

Both races are forced here, not left to the machine's load: the delete is held (a table lock)
after it retired the inbox and before it commits, while an event comes in; and the deleted
instance's logout sequence is posted after the new connect created its row."""

from __future__ import annotations

import uuid
from typing import Any

import trio
from trio_websocket import open_websocket_url

from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    barrier,
    eventually,
    frames_until_pong,
    http,
    next_frame,
    open_instance,
    sim_post_ok,
    user_token,
    wait_frame,
)
from .payloads import envelope

LOGGED_OUT = "This device was logged out of WhatsApp. Connect again and scan a new QR code."


def logout_sequence(name: str) -> list[dict[str, Any]]:
    """What Evolution sends when it logs a session out, in its order (§5.4), then the delete's
    own events (§2.8)."""
    closed = {
        "instance": name,
        "status": "closed",
        "disconnectionAt": "2026-11-20T12:00:00.000Z",
        "disconnectionReasonCode": 401,
    }
    return [
        envelope("status.instance", name, closed),
        envelope("logout.instance", name, None),
        envelope(
            "connection.update", name, {"instance": name, "state": "close", "statusReason": 401}
        ),
        envelope("instance.delete", name, {"instanceName": name, "instanceId": str(uuid.uuid4())}),
        envelope("remove.instance", name, None),
    ]


async def _outcomes(pool: Any, bodies: list[dict[str, Any]]) -> list[str | None]:
    rows = await pool.fetch(
        "SELECT payload->>'date_time' AS at, outcome FROM webhook_inbox"
        " WHERE payload->>'date_time' = ANY($1::text[])",
        [b["date_time"] for b in bodies],
    )
    by_time = {r["at"]: r["outcome"] for r in rows}
    return [by_time.get(b["date_time"]) for b in bodies]


async def _sessionless(pool: Any, name: str) -> bool:
    """What an actor restarted now would load (core.state.InstanceState.sessionless)."""
    value: bool = await pool.fetchval(
        "SELECT sessionless FROM whatsapp_instances WHERE instance_name = $1", name
    )
    return value


async def test_the_ending_actor_of_a_deleted_instance_applies_nothing_stored_after_it(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    late = logout_sequence(name)
    async with (
        http(service.url) as client,
        open_pool(runner.database_url, min_size=2, max_size=2) as pool,
    ):
        await open_instance(client, service.simulator_url or "", user, "5511900000007")
        old = service.actors.supervisor.get(name)
        assert old is not None
        async with open_websocket_url(ws_url) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            answers: list[int] = []

            async def delete() -> None:
                answer = await client.delete("/api/whatsapp/instance", headers=auth(token))
                answers.append(answer.status_code)

            async def delete_waits_on_the_lock() -> bool:
                return bool(
                    await pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE auto_replies%'"
                    )
                )

            async with trio.open_nursery() as nursery, pool.acquire() as conn:
                async with conn.transaction():
                    # The delete's transaction retires the inbox, then settles the auto-replies:
                    # held there, its inbox retire is done and its commit is not.
                    await conn.execute("LOCK TABLE auto_replies IN EXCLUSIVE MODE")
                    nursery.start_soon(delete)
                    await eventually(delete_waits_on_the_lock, timeout=10)
                    for body in late:
                        stored = await client.post(
                            "/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS
                        )
                        assert stored.json() == {"accepted": True, "duplicate": False}
            assert answers == [204]
            with trio.fail_after(10):
                await old.stopped.wait()  # the deleted actor has ended: it did what it would
            # Nothing reached the user from the deleted instance, and nothing was applied: the
            # rows are orphans (out of the inbox lag, pruned by retention) until a row appears.
            assert [f["type"] for f in await frames_until_pong(ws)] == []

            async def orphans() -> bool:
                return await _outcomes(pool, late) == ["orphan"] * len(late)

            await eventually(orphans)

            connected = await client.post("/api/whatsapp/connect", headers=auth(token))
            assert connected.status_code == 200, connected.text
            seen: list[dict[str, Any]] = []
            await wait_frame(ws, lambda f: f["type"] == "qrcode", seen=seen)
            assert [f for f in seen if f["type"] == "notification"] == []
        # The new row retired them: kept, never applied.
        assert await _outcomes(pool, late) == ["deleted"] * len(late)
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["status"] == "waiting_qr" and view["phone_number"] is None


async def test_a_late_logout_after_the_new_row_is_stale_but_a_real_one_still_counts(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    sim_url = service.simulator_url or ""
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
    async with (
        http(service.url) as client,
        http(sim_url) as sim,
        open_pool(runner.database_url, min_size=1, max_size=1) as pool,
    ):
        await open_instance(client, sim, user, "5511900000008")
        assert (await client.delete("/api/whatsapp/instance", headers=auth(token))).status_code == (
            204
        )
        async with open_websocket_url(ws_url) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            connected = await client.post("/api/whatsapp/connect", headers=auth(token))
            assert connected.status_code == 200, connected.text
            await wait_frame(ws, lambda f: f["type"] == "qrcode")
            before = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
            assert before["status"] == "waiting_qr" and before["qr_code"]

            # The deleted instance's logout, delivered after the new row exists.
            late = logout_sequence(name)
            for body in late:
                stored = await client.post(
                    "/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS
                )
                assert stored.json() == {"accepted": True, "duplicate": False}

            async def settled() -> list[str | None] | None:
                outcomes = await _outcomes(pool, late)
                return outcomes if None not in outcomes else None

            outcomes = await eventually(settled)
            assert outcomes == ["unhandled", "applied", "applied", "unhandled", "applied"]
            frames = await frames_until_pong(ws)
            assert [f for f in frames if f["type"] in ("notification", "status")] == []
            after = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
            assert after["status"] == "waiting_qr" and after["qr_code"] == before["qr_code"]
            assert after["health"]["issues"] == []
            assert await _sessionless(pool, name) is True

            # The new session opens, then the phone unlinks it: that logout is real.
            await sim_post_ok(sim, f"/_sim/instances/{name}/scan", {"phone": "5511900000009"})
            await wait_frame(ws, lambda f: f["type"] == "status" and f["data"]["status"] == "open")
            assert await _sessionless(pool, name) is False
            await sim_post_ok(sim, f"/_sim/instances/{name}/disconnect", {"code": 401})
            note = await wait_frame(
                ws, lambda f: f["type"] == "notification" and f["data"]["message"] == LOGGED_OUT
            )
            assert note["data"]["title"] == "WhatsApp disconnected"
            mine = [b["date_time"] for b in late]

            async def real_close_applied() -> bool:
                return bool(
                    await pool.fetchval(
                        "SELECT count(*) FROM webhook_inbox WHERE instance_name = $1"
                        " AND event = 'connection.update' AND applied_at IS NOT NULL"
                        " AND payload->'data'->>'statusReason' = '401'"
                        " AND NOT payload->>'date_time' = ANY($2::text[])",
                        name,
                        mine,
                    )
                )

            # The simulator's whole sequence (status.instance, logout.instance, close/401) is
            # applied: one notification for all of it.
            await eventually(real_close_applied)
            await barrier(service, name)
            assert [f for f in await frames_until_pong(ws) if f["type"] == "notification"] == []
            view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
            assert view["status"] == "disconnected" and view["phone_number"] is None
            assert await _sessionless(pool, name) is True
