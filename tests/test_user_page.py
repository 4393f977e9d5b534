"""The user's page (`GET /`, every mode) in real headless Chromium (Debian's package, driven by
Playwright): sign in, connect with the QR code and its countdown, conversations updating live,
sending with receipts, the alert and reconnect toasts, surviving a restart of the service, a
phone-sized screen and the keyboard, refused, expired and evicted sessions.  Every flow records
the page's HTML, scripts, styles, API answers and WebSocket frames, and the test checks that no
secret is among them.

The browser side of each flow is tests/user_page_flows.py, run in a child process; it asks the
test to act (deliver a message, drop the phone, restart the service) in the middle of a flow.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from trio_websocket import WebSocketConnection, connect_websocket_url

from auzap_actors.core.webhook_auth import instance_secret
from auzap_actors.serve import Running

from .browser import run_browser_session, screenshots_dir
from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, open_instance, sim_post_ok
from .helpers import user_token as make_token
from .payloads import envelope

SCRIPT = str(Path(__file__).with_name("user_page_flows.py"))
PHONE = "5511900004321"
BIA = "5511988887777"
CARLOS = "5521977776666"
Seen = dict[str, Any]


async def _secrets(database_url: str, name: str | None) -> list[str]:
    """What the page must never see: the service's secrets and the instance's own."""
    found = [ADMIN_TOKEN, WEBHOOK_SECRET, SIM_API_KEY, JWT_SECRET]
    if name is not None:
        found.append(instance_secret(WEBHOOK_SECRET, name))
        rows = await fetch_rows(
            database_url,
            "SELECT evolution_token FROM whatsapp_instances WHERE instance_name = $1",
            name,
        )
        found += [r["evolution_token"] for r in rows if r["evolution_token"]]
    return found


def _assert_clean(seen: Seen, secrets: list[str]) -> None:
    print(f"checked {len(seen['bodies'])} bodies and {len(seen['frames'])} socket frames")
    assert seen["errors"] == [], seen["errors"]
    assert seen["frames"], "no socket frame recorded"
    for name in ("app.js", "live.js", "util.js", "view.js", "app.css"):
        assert any(f"/static/{name}" in body for body in seen["bodies"]), name
    for secret in secrets:
        for body in seen["bodies"]:
            assert secret not in body, f"a secret in {body[:80]}"
        for frame in seen["frames"]:
            assert secret not in frame, f"a secret in the frame {frame[:80]}"


def _simulator_actions(service: Running, name: str) -> dict[str, Any]:
    async def inbound(sender: str, text: str, push_name: str) -> str:
        async with http(service.simulator_url or "") as sim:
            answer = await sim_post_ok(
                sim,
                f"/_sim/instances/{name}/inbound",
                {"from": sender, "text": text, "push_name": push_name},
            )
        return str(answer.json()["id"])

    async def presence(jid: str, presence: str) -> None:
        data = {"id": jid, "presences": {jid: {"lastKnownPresence": presence, "lastSeen": None}}}
        async with http(service.url) as client:
            answer = await client.post(
                "/api/webhook/whatsapp",
                headers=WEBHOOK_HEADERS,
                json=envelope("presence.update", name, data),
            )
            assert answer.status_code == 200, answer.text

    async def disconnect() -> None:
        async with http(service.simulator_url or "") as sim:
            await sim_post_ok(
                sim, f"/_sim/instances/{name}/disconnect", {"code": 428, "auto_reconnect": False}
            )

    return {"inbound": inbound, "presence": presence, "disconnect": disconnect}


async def _user(service: Running, *, inbound: str | None = None) -> tuple[str, str]:
    """A user whose instance is open (connected through the API, scanned in the simulator),
    optionally with one message from Bia; their token and instance name."""
    user = uuid.uuid4()
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url or "", user, PHONE)
    if inbound:
        await _simulator_actions(service, name)["inbound"](BIA, inbound, "Bia Lima")
    return make_token(user), name


def _run(flow: str, service: Running, tmp_path: Path, handlers: Any = None, **extra: Any) -> Any:
    shots = screenshots_dir(tmp_path)
    return run_browser_session(
        SCRIPT, flow, service.url + "/", str(shots), json.dumps(extra), handlers=handlers or {}
    )


async def test_connect_flow_in_demo_mode(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start(demo=True)
    seen = await _run("connect_demo", service, tmp_path)
    assert seen["token_form_visible"] is True  # the paste form is there in demo mode too
    assert seen["stored"] is True and seen["stored_after_signout"] is None
    assert seen["before"] == "Not connected"
    assert seen["qr"] == "data:image/png;base64,"
    assert seen["waiting"] == "Waiting for scan"
    assert seen["expiry"] in ("Code expires in 45 s", "Code expires in 44 s"), seen["expiry"]
    assert seen["status"] == "Connected" and seen["phone"] == "+55 11 98765-4321"
    assert seen["qr_hidden"] is True
    assert seen["title"] == "Bia Lima" and seen["preview"] == "Oi! Vocês abrem amanhã?"
    assert seen["after_logout"] == "No number connected"
    name = "user_00000000-0000-4000-8000-00000000d3e0"
    _assert_clean(seen, await _secrets(runner.database_url, name))
    for shot in ("disconnected", "qr", "connected"):
        assert (screenshots_dir(tmp_path) / f"user-{shot}.png").stat().st_size > 10_000


async def test_the_qr_code_counts_down_to_its_expiry(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start(demo=True)
    seen = await _run("qr_expiry", service, tmp_path)
    assert seen["fresh"] in ("Code expires in 45 s", "Code expires in 44 s"), seen["fresh"]
    # 12, 24, 36 s later; then 48 s: Evolution's 45 s are over and the page says how old it is.
    assert [text[:16] for text in seen["steps"][:3]] == ["Code expires in "] * 3
    left = [int(text.split()[3]) for text in seen["steps"][:3]]
    assert all(abs(n - expected) <= 1 for n, expected in zip(left, [33, 21, 9], strict=True)), left
    assert seen["steps"][3].startswith(("Code is 48 s old", "Code is 49 s old")), seen["steps"]
    assert seen["steps"][3].endswith("a new one is on its way")
    assert seen["frame_state"] == "expired" and seen["live"] == "live"
    _assert_clean(seen, await _secrets(runner.database_url, None))


async def test_incoming_messages_appear_live(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start()
    token, name = await _user(service)
    seen = await _run("incoming", service, tmp_path, _simulator_actions(service, name), token=token)
    assert seen["demo_button_visible"] is False  # outside demo mode: the paste form only
    assert seen["phone"] == "+55 11 90000-4321" and seen["idle"] is True
    # (Both arrive within the same second, Evolution's timestamps' unit: either may be first.)
    assert sorted(seen["order"]) == [f"{BIA}@s.whatsapp.net", f"{CARLOS}@s.whatsapp.net"]
    assert seen["unread"] == "1" and seen["badge_after_open"] == 0
    assert seen["typing"] == "typing…" and seen["list_typing"] == "typing…"
    assert seen["typing_after_message"] == 0  # the message ends the typing
    assert seen["bubbles"] == ["Oi, tudo bem?", "Queria saber o horário de amanhã."]
    assert int(seen["carlos_unread"]) >= 2
    assert seen["bia_unread_later"] == "1" and seen["carlos_badge_open"] == 0
    _assert_clean(seen, await _secrets(runner.database_url, name))


async def test_sending_shows_receipts_advance(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start()
    token, name = await _user(service, inbound="Pode me mandar o cardápio?")

    async def read() -> None:
        """WhatsApp reports the message read (the simulator stops at delivered)."""
        async with http(service.simulator_url or "") as sim:
            [sent] = (await sim.get("/_sim/sent")).json()
        data = {
            "keyId": sent["id"],
            "remoteJid": sent["remote_jid"],
            "fromMe": True,
            "status": "READ",
            "messageId": "row-1",
        }
        async with http(service.url) as client:
            answer = await client.post(
                "/api/webhook/whatsapp",
                headers=WEBHOOK_HEADERS,
                json=envelope("messages.update", name, data),
            )
            assert answer.status_code == 200, answer.text

    seen = await _run("send", service, tmp_path, {"read": read}, token=token)
    assert seen["demo_button_visible"] is False
    statuses = [s for i, s in enumerate(seen["statuses"]) if i == 0 or seen["statuses"][i - 1] != s]
    assert statuses[0] in ("pending", "server_ack"), statuses
    assert statuses[-3:] == ["server_ack", "delivered", "read"], statuses
    assert seen["delivered_label"] == "Delivered" and seen["read_label"] == "Read"
    assert seen["read_color"] == "rgb(52, 183, 241)"  # the blue ✓✓
    assert seen["compose_after"] == "" and seen["list_receipt"] == "read"
    assert seen["settings_status"] == "Saved: automatic replies are on."
    assert seen["prompt_after_reload"] == "Você responde pela Padaria Sol. Seja breve."
    assert seen["auto_reply_after_reload"] is True
    lines = seen["export_lines"]
    assert seen["export_name"].startswith("auzap-export-")
    assert seen["export_name"].endswith(".ndjson")
    assert lines[0]["type"] == "export" and lines[-1]["type"] == "end"
    assert lines[-1]["counts"]["messages"] == 3 and lines[-1]["counts"]["conversations"] == 2
    assert seen["new_chat_title"] == "+55 21 97777-6666"
    _assert_clean(seen, await _secrets(runner.database_url, name))
    async with http(service.url) as client:
        settings = await client.get("/api/whatsapp/settings", headers=auth(token))
    stored = settings.json()
    assert {key: stored[key] for key in ("auto_reply", "auto_reply_prompt")} == {
        "auto_reply": True,
        "auto_reply_prompt": "Você responde pela Padaria Sol. Seja breve.",
    }
    assert stored["auto_reply_per_contact_hour"] == 5  # the limits come with it, defaults here


async def test_forced_disconnect_alerts_and_reconnect_now(
    runner: ServiceRunner, tmp_path: Path
) -> None:
    # Checks every second: the alert after 2 failed ones, the automatic reconnect after 5
    # (time enough to click "Reconnect now" first in the first round).
    service = await runner.start(
        AUZAP_HEALTH_INTERVAL_S="1",
        AUZAP_HEALTH_ALERT_THRESHOLD="2",
        AUZAP_HEALTH_MAX_FAILURES="5",
    )
    token, name = await _user(service)
    actions = _simulator_actions(service, name)
    seen = await _run("disconnect", service, tmp_path, actions, token=token)
    assert "2 health checks in a row" in seen["alert"]
    assert seen["reconnect_now_status"] == 200 and seen["alert_gone"] is True
    assert seen["reconnecting"].startswith("Reconnecting automatically")
    assert seen["back"] in ("WhatsApp reconnected", "WhatsApp connected")
    assert seen["status"] == "Connected" and seen["warnings_left"] == 0
    _assert_clean(seen, await _secrets(runner.database_url, name))


async def test_page_survives_a_restart_of_the_service(
    runner: ServiceRunner, tmp_path: Path
) -> None:
    service = await runner.start()
    port = service.url.rsplit(":", 1)[1]
    token, name = await _user(service, inbound="Bom dia!")
    actions = _simulator_actions(service, name)

    async def stop() -> None:
        await runner.stop()

    async def start() -> None:
        await runner.start(AUZAP_PORT=port)  # the same address: the page is still open on it

    actions.update(stop=stop, start=start)
    seen = await _run("restart", service, tmp_path, actions, token=token)
    assert seen["offline"].startswith("Offline — reconnecting"), seen["offline"]
    print(f"page live again {seen['live_again_after_s']} s after the service was back")
    assert seen["status"] == "Connected"
    assert "Chegou enquanto vocês reiniciavam" in seen["carlos"]
    async with http(service.url) as client:
        listed = (await client.get("/api/whatsapp/conversations", headers=auth(token))).json()
    [carlos] = [c for c in listed["conversations"] if c["remote_jid"].startswith(CARLOS)]
    assert seen["carlos_unread"] == str(carlos["unread_count"]), (seen, carlos)
    # Only the restart itself may have failed a request (the page's probe while it was down).
    seen["errors"] = [e for e in seen["errors"] if "ERR_CONNECTION_REFUSED" not in e]
    _assert_clean(seen, await _secrets(runner.database_url, name))


async def test_phone_screen_and_keyboard(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start(demo=True)
    seen = await _run("phone_keyboard", service, tmp_path)
    assert seen["login_focused"] == "demo-login"
    assert seen["tabs_to_connect"] <= 12
    assert seen["focus_outline"] == "solid"
    assert seen["page_width"] <= 390 and 200 <= seen["qr_width"] <= 300
    assert seen["list_visible"] is True and seen["list_hidden_in_chat"] is True
    assert seen["chat_width"] == 390 and seen["list_back"] is True
    _assert_clean(seen, await _secrets(runner.database_url, None))


async def test_an_expired_token_brings_back_the_sign_in(
    runner: ServiceRunner, tmp_path: Path
) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = make_token(user, exp=int(time.time()) + 4)
    foreign = jwt.encode(
        {"sub": str(user), "exp": int(time.time()) + 3600}, "another-secret-" * 4, "HS256"
    )
    seen = await _run("expiry", service, tmp_path, token=token, foreign_token=foreign)
    assert seen["refused"].startswith("The service did not accept this token")
    # The browser logs the refused upgrade and the 401 of the check that followed it.
    expected = ("HTTP Authentication failed", "status of 401")
    seen["errors"] = [e for e in seen["errors"] if not any(x in e for x in expected)]
    assert seen["message"] == "Your session has expired. Sign in again."
    assert seen["stored"] is None
    assert any('"type":"snapshot"' in frame for frame in seen["frames"])
    _assert_clean(seen, await _secrets(runner.database_url, None))


async def test_a_tab_evicted_by_another_pauses(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start(AUZAP_WS_PER_USER="1")
    token = make_token(uuid.uuid4())
    other: list[WebSocketConnection] = []

    async def crowd() -> None:
        url = service.url.replace("http://", "ws://") + f"/ws?token={token}"
        other.append(await connect_websocket_url(runner.nursery, url))

    seen = await _run("evicted", service, tmp_path, {"crowd": crowd}, token=token)
    assert seen["paused"] == "Paused: open in too many tabs"
    assert seen["still_paused"] == "paused" and seen["resumed"] == "Live"
    assert other[0].closed is not None and other[0].closed.code == 4409  # the page took it back
    _assert_clean(seen, await _secrets(runner.database_url, None))


async def test_page_and_demo_routes_over_http(runner: ServiceRunner) -> None:
    service = await runner.start()
    async with http(service.url) as client:
        page = await client.get("/")
        assert page.status_code == 200 and 'data-demo="false"' in page.text
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        host = service.url.removeprefix("http://")
        assert f"connect-src 'self' ws://{host} wss://{host};" in csp
        script = await client.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/static/../demo.py")).status_code == 404
        assert (await client.get("/static/nothing.js")).status_code == 404
        # Outside demo mode the demo routes do not exist.
        token = make_token(uuid.uuid4())
        inbound = await client.post(
            "/api/demo/inbound", headers=auth(token), json={"from": BIA, "text": "x"}
        )
        assert inbound.status_code == 404
        assert (await client.get("/api/whatsapp/settings", headers=auth(token))).status_code == 404


async def test_demo_inbound_reaches_only_the_callers_instance(runner: ServiceRunner) -> None:
    service = await runner.start(demo=True)
    async with http(service.url) as client:
        assert 'data-demo="true"' in (await client.get("/")).text
        body = {"from": BIA, "text": "Oi!", "push_name": "Bia"}
        assert (await client.post("/api/demo/inbound", json=body)).status_code == 401
        token = (await client.post("/api/demo/login")).json()["token"]
        headers = auth(token)
        early = await client.post("/api/demo/inbound", headers=headers, json=body)
        assert early.status_code == 404, early.text  # no instance yet
        for bad in (
            {"from": "abc", "text": "x"},
            {"from": BIA, "text": ""},
            {"from": BIA, "text": "x" * 5000},
            {"from": BIA, "text": "x", "push_name": 42},
            {"to": BIA},
        ):
            answer = await client.post("/api/demo/inbound", headers=headers, json=bad)
            assert answer.status_code == 400, (bad, answer.text)
        assert (await client.post("/api/whatsapp/connect", headers=headers)).status_code == 200
        waiting = await client.post("/api/demo/inbound", headers=headers, json=body)
        assert waiting.status_code == 409  # not connected yet
        assert (await client.post("/api/demo/scan", headers=headers)).status_code == 200

        async def delivered() -> bool:
            answer = await client.post("/api/demo/inbound", headers=headers, json=body)
            return answer.status_code == 200

        await eventually(delivered)

        async def stored() -> list[Any]:
            page = await client.get("/api/whatsapp/conversations", headers=headers)
            return list(page.json()["conversations"])

        [conversation] = await eventually(stored)
        assert conversation["remote_jid"] == f"{BIA}@s.whatsapp.net"
        # Another user's token reaches that user's own (missing) instance, never the demo one.
        other = make_token(uuid.uuid4())
        answer = await client.post("/api/demo/inbound", headers=auth(other), json=body)
        assert answer.status_code == 404
