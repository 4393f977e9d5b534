"""Authentication and isolation: bad tokens get 401 on HTTP and on the WebSocket, and a socket only
ever receives its own user's (and own organization's) frames."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from .conftest import ADMIN_TOKEN, JWT_SECRET, ServiceRunner
from .helpers import (
    auth,
    barrier,
    fetch_rows,
    frames_until_pong,
    http,
    next_frame,
    no_frame,
    sim_post_ok,
    socket_url,
    user_token,
    wait_frame,
)


def _b64(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bad_tokens() -> dict[str, str | None]:
    user = str(uuid.uuid4())
    now = int(time.time())
    claims = {"sub": user, "exp": now + 3600}
    return {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": jwt.encode({"sub": user, "exp": now - 60}, JWT_SECRET, algorithm="HS256"),
        "wrong_secret": jwt.encode(
            claims, "another-secret-0123456789abcdef-xyz", algorithm="HS256"
        ),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "hs512": jwt.encode(claims, JWT_SECRET, algorithm="HS512"),
        "no_exp": jwt.encode({"sub": user}, JWT_SECRET, algorithm="HS256"),
        "sub_not_uuid": jwt.encode(
            {"sub": "admin", "exp": now + 60}, JWT_SECRET, algorithm="HS256"
        ),
    }


async def test_bad_tokens_are_refused_on_http_and_websocket(runner: ServiceRunner) -> None:
    service = await runner.start()
    ws_base = service.url.replace("http://", "ws://")
    async with http(service.url) as client:
        for label, token in bad_tokens().items():
            headers = auth(token) if token else {}
            for method, path in (
                ("GET", "/api/whatsapp/instance"),
                ("POST", "/api/whatsapp/connect"),
            ):
                answer = await client.request(method, path, headers=headers)
                assert answer.status_code == 401, (label, path, answer.text)
                assert answer.json()["error"]["code"] in (
                    "unauthorized",
                    "invalid_token",
                    "token_expired",
                ), label
            url = f"{ws_base}/ws" + (f"?token={token}" if token else "")
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(url):
                    pass
            assert rejected.value.status_code == 401, label
        # The admin surface wants the admin token, not a user token.
        good_user = user_token(uuid.uuid4())
        assert (await client.get("/admin/tree", headers=auth(good_user))).status_code == 401
        assert (await client.get("/admin/tree")).status_code == 401
        assert (await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))).status_code == 200


async def test_a_socket_gets_only_its_own_users_and_orgs_frames(runner: ServiceRunner) -> None:
    service = await runner.start()
    ws_base = service.url.replace("http://", "ws://")
    org = uuid.uuid4()
    alice, bob, carol, dave = (uuid.uuid4() for _ in range(4))
    tokens = {
        "alice": user_token(alice, org),  # org member who connects
        "bob": user_token(bob),  # no organization
        "carol": user_token(carol, org),  # same organization as alice
        "dave": user_token(dave, uuid.uuid4()),  # another organization
    }
    async with (
        open_websocket_url(f"{ws_base}/ws?token={tokens['alice']}") as ws_alice,
        open_websocket_url(f"{ws_base}/ws?token={tokens['bob']}") as ws_bob,
        open_websocket_url(f"{ws_base}/ws?token={tokens['carol']}") as ws_carol,
        open_websocket_url(f"{ws_base}/ws?token={tokens['dave']}") as ws_dave,
        http(service.url) as client,
    ):
        for ws in (ws_alice, ws_bob, ws_carol, ws_dave):
            assert (await next_frame(ws))["type"] == "snapshot"
        answer = await client.post("/api/whatsapp/connect", headers=auth(tokens["alice"]))
        assert answer.status_code == 200
        name = f"user_{alice}"
        await wait_frame(ws_alice, lambda f: f["type"] == "qrcode")
        async with http(service.simulator_url or "") as sim:
            await sim_post_ok(sim, f"/_sim/instances/{name}/scan", {"phone": "5511955554444"})
        await wait_frame(
            ws_alice, lambda f: f["type"] == "status" and f["data"]["status"] == "open"
        )
        org_frame = await wait_frame(
            ws_carol, lambda f: f["type"] == "org.status" and f["data"]["status"] == "open"
        )
        assert org_frame["data"]["instance_name"] == name
        # Carol sees organization frames only: never Alice's QR, status or notifications.
        await barrier(service, name)
        for frame in await frames_until_pong(ws_carol):
            assert frame["type"].startswith("org."), frame
        await no_frame(ws_bob, service, name)
        await no_frame(ws_dave, service, name)
        # Ping/pong works and is private too.
        await ws_bob.send_message(json.dumps({"type": "ping"}))
        assert await next_frame(ws_bob) == {"type": "pong"}
        # One pong looks like another: Dave's next frames come from his own connect, and a
        # pong of Bob's leaked to him would have been queued before them.
        dave_connects = await client.post("/api/whatsapp/connect", headers=auth(tokens["dave"]))
        assert dave_connects.status_code == 200, dave_connects.text
        dave_first = await next_frame(ws_dave)
        assert dave_first["type"] != "pong", "Bob's pong reached Dave"
        assert f"user_{dave}" in dave_first["data"].values(), dave_first
        # Bob cannot read Alice's instance through the API either.
        mine = await client.get("/api/whatsapp/instance", headers=auth(tokens["bob"]))
        assert mine.status_code == 404


@pytest.mark.parametrize("exp_type", [int, str], ids=["numeric-exp", "numeric-string-exp"])
async def test_socket_ends_when_its_token_expires(
    runner: ServiceRunner, exp_type: type[int] | type[str]
) -> None:
    service = await runner.start()
    # PyJWT accepts an `exp` given as a numeric string: the socket must still end at expiry.
    exp = exp_type(int(time.time()) + 2)
    token = jwt.encode({"sub": str(uuid.uuid4()), "exp": exp}, JWT_SECRET, algorithm="HS256")
    url = socket_url(service, token)
    async with open_websocket_url(url) as ws:
        assert (await next_frame(ws))["type"] == "snapshot"
        with trio.fail_after(5):
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason.code == 4401


async def test_org_frames_follow_the_user_to_a_new_organization(runner: ServiceRunner) -> None:
    service = await runner.start()
    ws_base = service.url.replace("http://", "ws://")
    old_org, new_org = uuid.uuid4(), uuid.uuid4()
    alice, colleague = uuid.uuid4(), uuid.uuid4()
    async with http(service.url) as client:
        connect = await client.post(
            "/api/whatsapp/connect", headers=auth(user_token(alice, old_org))
        )
        assert connect.json()["instance"]["organization_id"] == str(old_org)
        # Alice moved: her next token names the new organization.
        moved = await client.get("/api/whatsapp/instance", headers=auth(user_token(alice, new_org)))
        assert moved.status_code == 200 and moved.json()["organization_id"] == str(new_org)
        rows = await fetch_rows(
            runner.database_url,
            "SELECT organization_id::text AS org FROM whatsapp_instances WHERE user_id = $1",
            alice,
        )
        assert rows == [{"org": str(new_org)}]
        async with open_websocket_url(
            f"{ws_base}/ws?token={user_token(colleague, new_org)}"
        ) as ws_new:
            assert (await next_frame(ws_new))["type"] == "snapshot"
            async with http(service.simulator_url or "") as sim:
                await sim_post_ok(
                    sim, f"/_sim/instances/user_{alice}/scan", {"phone": "5511955551111"}
                )
            frame = await wait_frame(ws_new, lambda f: f["type"] == "org.status")
            assert frame["data"]["instance_name"] == f"user_{alice}"


async def test_demo_routes_do_not_exist_outside_demo_mode(runner: ServiceRunner) -> None:
    service = await runner.start()
    async with http(service.url) as client:
        assert (await client.post("/api/demo/login")).status_code == 404
        scan = await client.post("/api/demo/scan", headers=auth(user_token(uuid.uuid4())))
        assert scan.status_code == 404
