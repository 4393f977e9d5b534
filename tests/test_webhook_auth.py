"""Webhook authenticity: each instance's webhook config carries its own secret, valid only for
events naming that instance; the master secret is never handed to Evolution and stays valid for
every instance; Evolution's `jwt_key` tokens must carry its claims and live at most 10 minutes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from auzap_actors.core.webhook_auth import instance_secret

from .conftest import SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, user_token
from .payloads import envelope, text_message

HEADER = "X-Auzap-Webhook-Secret"


def _message_for(name: str, wa_id: str) -> dict[str, Any]:
    return envelope(
        "messages.upsert", name, text_message(wa_id, "5511977776666@s.whatsapp.net", "oi")
    )


def _evolution_jwt(secret: str, *, lifetime: int = 600, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + lifetime}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


async def test_an_instance_secret_is_valid_only_for_its_own_instance(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    alice, bob = f"user_{uuid.uuid4()}", f"user_{uuid.uuid4()}"
    alice_secret = instance_secret(WEBHOOK_SECRET, alice)
    bob_secret = instance_secret(WEBHOOK_SECRET, bob)
    assert alice_secret != bob_secret and WEBHOOK_SECRET not in (alice_secret, bob_secret)
    async with http(service.url) as client:
        url = "/api/webhook/whatsapp"
        forged = await client.post(
            url, json=_message_for(bob, "3EB0F0F0F0F00001"), headers={HEADER: alice_secret}
        )
        assert forged.status_code == 401, forged.text
        by_jwt = await client.post(
            url,
            json=_message_for(bob, "3EB0F0F0F0F00002"),
            headers=auth(_evolution_jwt(alice_secret, app="evolution", action="webhook")),
        )
        assert by_jwt.status_code == 401, by_jwt.text
        own = await client.post(
            url, json=_message_for(bob, "3EB0F0F0F0F00003"), headers={HEADER: bob_secret}
        )
        assert own.status_code == 200, own.text
        master = await client.post(
            url, json=_message_for(bob, "3EB0F0F0F0F00004"), headers=WEBHOOK_HEADERS
        )
        assert master.status_code == 200, master.text
        # The per-user route checks the user too: Alice's secret cannot post as Bob there.
        bob_user = bob.removeprefix("user_")
        cross = await client.post(
            f"/api/webhook/user/{bob_user}",
            json=_message_for(bob, "3EB0F0F0F0F00005"),
            headers={HEADER: alice_secret},
        )
        assert cross.status_code == 401
    stored = await fetch_rows(
        runner.database_url, "SELECT payload -> 'data' -> 'key' ->> 'id' AS id FROM webhook_inbox"
    )
    assert sorted(r["id"] for r in stored) == ["3EB0F0F0F0F00003", "3EB0F0F0F0F00004"]


async def test_webhook_jwts_must_be_evolutions(runner: ServiceRunner) -> None:
    service = await runner.start()
    name = f"user_{uuid.uuid4()}"
    secret = instance_secret(WEBHOOK_SECRET, name)
    async with http(service.url) as client:

        async def post(token: str, wa_id: str) -> int:
            answer = await client.post(
                "/api/webhook/whatsapp", json=_message_for(name, wa_id), headers=auth(token)
            )
            return answer.status_code

        assert await post(_evolution_jwt(secret), "3EB0A1") == 401  # no claims
        assert await post(_evolution_jwt(secret, app="evolution"), "3EB0A2") == 401
        a_day = _evolution_jwt(secret, lifetime=86400, app="evolution", action="webhook")
        assert await post(a_day, "3EB0A3") == 401
        # A user token (signed with the JWT secret) is no webhook credential.
        assert await post(user_token(uuid.uuid4()), "3EB0A4") == 401
        good = _evolution_jwt(secret, app="evolution", action="webhook")
        assert await post(good, "3EB0A5") == 200
        by_master = _evolution_jwt(WEBHOOK_SECRET, app="evolution", action="webhook")
        assert await post(by_master, "3EB0A6") == 200


async def _webhook_header(sim_url: str, name: str) -> str | None:
    async with http(sim_url) as sim:
        found = await sim.get(f"/webhook/find/{name}", headers={"apikey": SIM_API_KEY})
        assert found.status_code == 200, found.text
        headers: dict[str, str] = (found.json() or {}).get("headers") or {}
        return headers.get(HEADER)


async def test_evolution_gets_the_instance_secret_and_old_configs_are_resynced_at_boot(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    name = f"user_{user}"
    async with http(service.url) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200
    sim_url = service.simulator_url or ""
    assert await _webhook_header(sim_url, name) == instance_secret(WEBHOOK_SECRET, name)

    # An instance configured by an earlier version carried the master secret.
    await runner.stop()
    async with http(sim_url) as sim:
        old = {
            "webhook": {
                "enabled": True,
                "url": f"{service.url}/api/webhook/whatsapp",
                "events": ["MESSAGES_UPSERT"],
                "headers": {HEADER: WEBHOOK_SECRET},
            }
        }
        answer = await sim.post(f"/webhook/set/{name}", json=old, headers={"apikey": SIM_API_KEY})
        assert answer.status_code in (200, 201), answer.text
    assert await _webhook_header(sim_url, name) == WEBHOOK_SECRET
    await runner.start()  # the actor's boot re-syncs the webhook config

    async def synced() -> bool:
        return await _webhook_header(sim_url, name) == instance_secret(WEBHOOK_SECRET, name)

    await eventually(synced, timeout=10)
