"""The user's page (`GET /`, every mode) in real headless Chromium (Debian's package, driven by
Playwright): sign in, connect with the QR code, conversations updating live, sending with
receipts, the alert and reconnect toasts, surviving a restart of the service, a phone-sized
screen and the keyboard.  Every flow records the page's HTML, scripts, styles, API answers and
WebSocket frames, and the test checks that no secret is among them.

This file doubles as the browser script, run in a child process (tests/browser.py says why);
the script asks the test to act on the service or the simulator in the middle of a flow.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__:
    import jwt
    from trio_websocket import WebSocketConnection, connect_websocket_url

    from auzap_actors.core.webhook_auth import instance_secret
    from auzap_actors.serve import Running

    from .browser import run_browser_session, screenshots_dir
    from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
    from .helpers import WEBHOOK_HEADERS, auth, fetch_rows, http, open_instance, sim_post_ok
    from .helpers import user_token as make_token
    from .payloads import envelope
else:  # run as the browser script, in a child process: tests/ is sys.path[0]
    from browser import ask, finish, launch

PHONE = "5511900004321"
BIA = "5511988887777"
CARLOS = "5521977776666"
Seen = dict[str, Any]


# ============================== the browser script's side ==============================


class Recorder:
    """Everything the page received: documents, scripts, styles, API answers, socket frames."""

    def __init__(self, page: Any) -> None:
        self.bodies: list[str] = []
        self.frames: list[str] = []
        self.errors: list[str] = []
        page.on("requestfinished", self._finished)
        page.on("websocket", self._socket)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )

    def _socket(self, ws: Any) -> None:
        ws.on("framereceived", lambda payload: self.frames.append(str(payload)))
        ws.on("framesent", lambda payload: self.frames.append(str(payload)))

    def _finished(self, request: Any) -> None:
        # Read at once: a page that navigates (a reload) drops the bodies of what it loaded.
        if request.resource_type == "image":
            return
        response = request.response()
        if response is not None:
            self.bodies.append(request.url + "\n" + response.text())

    def dump(self) -> dict[str, Any]:
        return {"bodies": self.bodies, "frames": self.frames, "errors": self.errors}


def _shot(page: Any, shots: Path, name: str) -> None:
    page.wait_for_timeout(350)  # let the toasts' and panels' transitions settle
    page.screenshot(path=str(shots / f"user-{name}.png"))


def _sign_in_with_token(
    page: Any, url: str, pasted: str, seen: Seen, shots: Path | None = None
) -> None:
    page.goto(url)
    page.wait_for_selector("#token-input", state="visible")
    seen["demo_button_visible"] = page.is_visible("#demo-login")
    page.fill("#token-input", pasted)
    if shots is not None:
        _shot(page, shots, "signin")
    page.click("#token-signin")
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)


def _wait_status(page: Any, status: str, timeout: int = 15_000) -> None:
    page.wait_for_selector(f"#wa-status[data-status='{status}']", timeout=timeout)


def _conversation(page: Any, phone: str) -> str:
    return f".conv[data-jid='{phone}@s.whatsapp.net']"


def flow_connect_demo(page: Any, url: str, shots: Path, _: dict[str, Any]) -> Seen:
    seen: Seen = {}
    page.goto(url)
    page.wait_for_selector("#demo-login", state="visible")
    seen["token_form_visible"] = page.is_visible("#token-input")
    page.click("#demo-login")
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)
    seen["stored"] = page.evaluate("sessionStorage.getItem('auzap-token') !== null")
    seen["before"] = page.inner_text("#wa-status")
    _shot(page, shots, "disconnected")
    page.click("#connect")
    page.wait_for_selector("#qr", state="visible", timeout=10_000)
    seen["qr"] = (page.get_attribute("#qr", "src") or "")[:22]
    seen["waiting"] = page.inner_text("#wa-status")
    seen["expiry"] = page.inner_text("#qr-expiry")
    _shot(page, shots, "qr")
    page.click("#demo-scan")
    _wait_status(page, "open")
    page.wait_for_selector(".toast:has-text('WhatsApp connected')", timeout=10_000)
    seen["status"] = page.inner_text("#wa-status")
    seen["phone"] = page.inner_text("#account-phone")
    seen["qr_hidden"] = page.is_hidden("#qr")
    # A message from someone, through the demo control.
    page.click("#demo-inbound-open")
    page.fill("#demo-from", BIA)
    page.fill("#demo-name", "Bia Lima")
    page.fill("#demo-text", "Oi! Vocês abrem amanhã?")
    page.click("#demo-inbound-form button[type=submit]")
    page.wait_for_selector(_conversation(page, BIA), timeout=10_000)
    seen["preview"] = page.inner_text(_conversation(page, BIA) + " .conv-preview")
    seen["title"] = page.inner_text(_conversation(page, BIA) + " .conv-title")
    _shot(page, shots, "connected")
    # Logging the number out asks first.
    page.click("#logout")
    page.click("#logout-confirm")
    _wait_status(page, "disconnected")
    seen["after_logout"] = page.inner_text("#account-phone")
    page.click("#signout")
    page.wait_for_selector("#demo-login", state="visible")
    seen["stored_after_signout"] = page.evaluate("sessionStorage.getItem('auzap-token')")
    return seen


def flow_qr_expiry(page: Any, url: str, shots: Path, _: dict[str, Any]) -> Seen:
    seen: Seen = {}
    page.clock.install()  # the page's timers and Date, moved forward by the script
    page.goto(url)
    page.click("#demo-login")
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)
    page.click("#connect")
    page.wait_for_selector("#qr", state="visible", timeout=10_000)
    seen["fresh"] = page.inner_text("#qr-expiry")
    expired = []
    # In steps, with real time between them for the socket's ping to get its pong.
    for _step in range(4):
        page.clock.fast_forward(12_000)
        page.wait_for_timeout(300)
        expired.append(page.inner_text("#qr-expiry"))
    seen["steps"] = expired
    seen["frame_state"] = page.get_attribute("#qr-frame", "data-state")
    seen["live"] = page.get_attribute("#live", "data-state")
    return seen


def flow_incoming(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    session = {"access_token": extra["token"], "token_type": "bearer", "refresh_token": "r1"}
    _sign_in_with_token(page, url, json.dumps(session), seen, shots)
    _wait_status(page, "open")
    seen["phone"] = page.inner_text("#account-phone")
    seen["idle"] = page.is_visible("#idle-panel")
    ask("inbound", sender=BIA, text="Oi, tudo bem?", push_name="Bia Lima")
    page.wait_for_selector(_conversation(page, BIA), timeout=10_000)
    ask("inbound", sender=CARLOS, text="O pedido #1042 já saiu para entrega?", push_name="Carlos")
    page.wait_for_selector(_conversation(page, CARLOS), timeout=10_000)
    seen["order"] = page.eval_on_selector_all(".conv", "els => els.map(e => e.dataset.jid)")
    seen["unread"] = page.inner_text(_conversation(page, CARLOS) + " .unread-badge")
    page.click(_conversation(page, BIA))
    page.wait_for_selector(".bubble:has-text('Oi, tudo bem?')", timeout=10_000)
    seen["badge_after_open"] = page.locator(_conversation(page, BIA) + " .unread-badge").count()
    ask("presence", jid=f"{BIA}@s.whatsapp.net", presence="composing")
    page.wait_for_selector("#chat-sub.typing", timeout=10_000)
    seen["typing"] = page.inner_text("#chat-sub")
    seen["list_typing"] = page.inner_text(_conversation(page, BIA) + " .conv-preview")
    ask("inbound", sender=BIA, text="Queria saber o horário de amanhã.", push_name="Bia Lima")
    page.wait_for_selector(".bubble:has-text('horário de amanhã')", timeout=10_000)
    seen["typing_after_message"] = page.locator("#chat-sub.typing").count()
    ask("inbound", sender=CARLOS, text="Obrigado!", push_name="Carlos")
    page.wait_for_selector(_conversation(page, CARLOS) + ":has-text('Obrigado!')", timeout=10_000)
    seen["bubbles"] = page.eval_on_selector_all(
        ".bubble .body", "els => els.map(e => e.textContent)"
    )
    seen["carlos_unread"] = page.inner_text(_conversation(page, CARLOS) + " .unread-badge")
    _shot(page, shots, "conversations")
    return seen


# Every outgoing bubble the page draws, in order: the receipts it showed, one by one.
STATUS_LOG = """() => {
  window.__statuses = [];
  const note = (el) => {
    if (el.matches && el.matches('.bubble.out')) window.__statuses.push(el.dataset.status);
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) note(n);
  }).observe(document.getElementById('messages'), { childList: true });
}"""


def flow_send(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    _sign_in_with_token(page, url, extra["token"], seen)  # a raw JWT this time
    _wait_status(page, "open")
    page.click(_conversation(page, BIA))
    page.wait_for_selector(".bubble:has-text('Pode me mandar o cardápio?')", timeout=10_000)
    page.evaluate(STATUS_LOG)
    page.fill("#compose", "Claro! Segue o cardápio de hoje.")
    page.press("#compose", "Enter")
    mine = ".bubble.out:has-text('Segue o cardápio')"
    page.wait_for_selector(mine + "[data-status='delivered']", timeout=10_000)
    seen["delivered_label"] = page.get_attribute(mine + " .receipt", "aria-label")
    ask("read")
    page.wait_for_selector(mine + "[data-status='read']", timeout=10_000)
    seen["read_label"] = page.get_attribute(mine + " .receipt", "aria-label")
    seen["read_color"] = page.eval_on_selector(mine + " .receipt", "e => getComputedStyle(e).color")
    seen["statuses"] = page.evaluate("window.__statuses")
    seen["compose_after"] = page.input_value("#compose")
    seen["list_receipt"] = page.get_attribute(_conversation(page, BIA) + " .receipt", "data-status")
    _shot(page, shots, "receipts")
    # A message to a number not in the list yet: its conversation appears and opens.
    page.click("#new-chat")
    page.fill("#new-chat-to", "+55 (21) 97777-6666")
    page.fill("#new-chat-text", "Seu pedido saiu para entrega.")
    page.click("#new-chat-form button[type=submit]")
    page.wait_for_selector(_conversation(page, CARLOS) + "[aria-current='true']", timeout=10_000)
    page.wait_for_selector(".bubble.out:has-text('Seu pedido saiu')", timeout=10_000)
    seen["new_chat_title"] = page.inner_text("#chat-title")
    # Automatic replies: switch on with a prompt; the server keeps both.
    page.click("#open-settings")
    page.check("#auto-reply")
    page.fill("#auto-reply-prompt", "Você responde pela Padaria Sol. Seja breve.")
    page.click("#settings-save")
    page.wait_for_selector("#settings-status:has-text('Saved')", timeout=10_000)
    seen["settings_status"] = page.inner_text("#settings-status")
    _shot(page, shots, "settings")
    # Export: fetched with the Bearer header, saved as a file.
    with page.expect_download(timeout=10_000) as download_info:
        page.click("#export")
    path = download_info.value.path()
    seen["export_name"] = download_info.value.suggested_filename
    seen["export_lines"] = [json.loads(line) for line in Path(path).read_text().splitlines()]
    page.click("#settings [data-close]")
    page.reload()
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)
    page.click("#open-settings")
    page.wait_for_function(
        "document.getElementById('auto-reply-prompt').value.length > 0", timeout=10_000
    )
    seen["prompt_after_reload"] = page.input_value("#auto-reply-prompt")
    seen["auto_reply_after_reload"] = page.is_checked("#auto-reply")
    return seen


def _toast(title: str) -> str:
    return f".toast:has(.t-title:text-is('{title}'))"


def flow_disconnect(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    _sign_in_with_token(page, url, extra["token"], seen)
    _wait_status(page, "open")
    # The phone drops; Evolution does not bring it back; health checks find out.
    ask("disconnect")
    alert = _toast("WhatsApp connection problem")
    page.wait_for_selector(alert + " [data-action=reconnect]", timeout=20_000)
    seen["alert"] = page.inner_text(alert + " .t-message")
    seen["alert_role"] = page.get_attribute(alert, "role")
    _shot(page, shots, "alert")
    with page.expect_response("**/api/whatsapp/connect") as answer:
        page.click(alert + " [data-action=reconnect]")
    seen["reconnect_now_status"] = answer.value.status
    _wait_status(page, "open")
    seen["alert_gone"] = page.locator(alert).count() == 0
    # Again, and this time nobody clicks: the automatic reconnect says so, then succeeds.
    ask("disconnect")
    page.wait_for_selector(_toast("WhatsApp connection problem"), timeout=20_000)
    page.wait_for_selector(_toast("Reconnecting WhatsApp"), timeout=20_000)
    seen["reconnecting"] = page.inner_text(_toast("Reconnecting WhatsApp") + " .t-message")
    _shot(page, shots, "reconnecting")
    _wait_status(page, "open", timeout=30_000)
    # "WhatsApp reconnected" when the next check finds it open, "WhatsApp connected" when
    # Evolution's open webhook comes first (with checks every second it often does).
    back = f"{_toast('WhatsApp reconnected')}, {_toast('WhatsApp connected')}"
    page.wait_for_selector(back, timeout=20_000)
    seen["back"] = page.inner_text(f":is({back}) .t-title")
    seen["status"] = page.inner_text("#wa-status")
    # The problems the toasts reported are solved: their warnings are gone.
    seen["warnings_left"] = page.locator(".toast[data-level=warning]").count()
    return seen


def flow_restart(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    _sign_in_with_token(page, url, extra["token"], seen)
    _wait_status(page, "open")
    page.wait_for_selector(_conversation(page, BIA), timeout=10_000)
    page.click(_conversation(page, BIA))
    page.wait_for_selector(".bubble", timeout=10_000)
    ask("stop")
    page.wait_for_selector("#live[data-state='offline']", timeout=15_000)
    seen["offline"] = page.inner_text("#live")
    # While we are down a message arrives (Evolution re-delivers its webhook later).
    ask("inbound", sender=CARLOS, text="Chegou enquanto vocês reiniciavam", push_name="Carlos")
    _shot(page, shots, "offline")
    ask("start")
    started = time.monotonic()
    page.wait_for_selector("#live[data-state='live']", timeout=30_000)
    seen["live_again_after_s"] = round(time.monotonic() - started, 2)
    _wait_status(page, "open")
    page.wait_for_selector(_conversation(page, CARLOS), timeout=30_000)
    seen["status"] = page.inner_text("#wa-status")
    seen["carlos"] = page.inner_text(_conversation(page, CARLOS) + " .conv-preview")
    seen["carlos_unread"] = page.inner_text(_conversation(page, CARLOS) + " .unread-badge")
    # The page still works: sending from the open conversation.
    page.fill("#compose", "Voltamos!")
    page.press("#compose", "Enter")
    mine = ".bubble.out:has-text('Voltamos!')[data-status='delivered']"
    page.wait_for_selector(mine, timeout=15_000)
    _shot(page, shots, "after-restart")
    return seen


def flow_expiry(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    # A token the service does not accept (another project's secret) is sent back at once.
    page.goto(url)
    page.fill("#token-input", extra["foreign_token"])
    page.click("#token-signin")
    page.wait_for_selector("#signin-error:not(:empty)", timeout=10_000)
    seen["refused"] = page.inner_text("#signin-error")
    _shot(page, shots, "signin-refused")
    _sign_in_with_token(page, url, extra["token"], seen)
    # The token runs out: the socket is closed with 4401 and the page asks to sign in again.
    page.wait_for_selector("#token-input", state="visible", timeout=15_000)
    seen["message"] = page.inner_text("#signin-error")
    seen["stored"] = page.evaluate("sessionStorage.getItem('auzap-token')")
    return seen


def flow_evicted(page: Any, url: str, shots: Path, extra: dict[str, Any]) -> Seen:
    seen: Seen = {}
    _sign_in_with_token(page, url, extra["token"], seen)
    # The same user opens one socket too many elsewhere: this page's socket is closed with 4409.
    ask("crowd")
    page.wait_for_selector("#live[data-state='paused']", timeout=10_000)
    seen["paused"] = page.inner_text("#live")
    page.wait_for_timeout(1500)  # and it does not evict the other one in turn
    seen["still_paused"] = page.get_attribute("#live", "data-state")
    page.click("#live-retry")
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)
    seen["resumed"] = page.inner_text("#live")
    return seen


def _tab_to(page: Any, element_id: str, limit: int = 40) -> int:
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return presses
    raise AssertionError(f"Tab never reached #{element_id}")


def flow_phone_keyboard(page: Any, url: str, shots: Path, _: dict[str, Any]) -> Seen:
    seen: Seen = {}
    page.goto(url)
    page.wait_for_selector("#demo-login", state="visible")
    seen["login_focused"] = page.evaluate("document.activeElement.id")
    page.keyboard.press("Enter")
    page.wait_for_selector("#live[data-state='live']", timeout=10_000)
    seen["tabs_to_connect"] = _tab_to(page, "connect")
    seen["focus_outline"] = page.eval_on_selector(
        "#connect", "e => getComputedStyle(e).outlineStyle"
    )
    page.keyboard.press("Enter")
    page.wait_for_selector("#qr", state="visible", timeout=10_000)
    seen["qr_width"] = page.eval_on_selector("#qr", "e => e.getBoundingClientRect().width")
    seen["page_width"] = page.evaluate("document.documentElement.scrollWidth")
    page.eval_on_selector(".layout", "e => e.scrollTo(0, 0)")
    _shot(page, shots, "phone-qr")
    _tab_to(page, "demo-scan")
    page.keyboard.press("Enter")
    _wait_status(page, "open")
    page.click("#demo-inbound-open")
    page.click("#demo-inbound-form button[type=submit]")
    page.wait_for_selector(_conversation(page, BIA), timeout=10_000)
    seen["list_visible"] = page.is_visible("#conversations")
    _shot(page, shots, "phone-list")
    page.focus(_conversation(page, BIA))
    page.keyboard.press("Enter")
    page.wait_for_selector(".bubble", timeout=10_000)
    seen["list_hidden_in_chat"] = page.is_hidden("#conversations")
    seen["chat_width"] = page.eval_on_selector("#chat", "e => e.getBoundingClientRect().width")
    page.keyboard.type("Sim, das 8h às 18h.")
    page.keyboard.press("Enter")
    page.wait_for_selector(".bubble.out:has-text('das 8h')", timeout=10_000)
    for close in page.query_selector_all(".toast .t-close"):
        close.click()  # the header under the toasts, for the picture
    _shot(page, shots, "phone-chat")
    page.click("#back")
    seen["list_back"] = page.is_visible("#conversations")
    return seen


FLOWS: dict[str, Callable[[Any, str, Path, dict[str, Any]], Seen]] = {
    "connect_demo": flow_connect_demo,
    "incoming": flow_incoming,
    "send": flow_send,
    "disconnect": flow_disconnect,
    "restart": flow_restart,
    "phone_keyboard": flow_phone_keyboard,
    "expiry": flow_expiry,
    "evicted": flow_evicted,
    "qr_expiry": flow_qr_expiry,
}
PHONE_FLOWS = {"phone_keyboard"}


def _drive(flow: str, url: str, shots: Path, extra: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            if flow in PHONE_FLOWS:
                viewport = {"width": 390, "height": 844}
                context = browser.new_context(
                    viewport=viewport, device_scale_factor=2, is_mobile=True, has_touch=True
                )
            else:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(10_000)
            recorder = Recorder(page)
            try:
                seen = FLOWS[flow](page, url, shots, extra)
            except Exception:
                # What the page was told, for the failure's report (QR codes shortened).
                for frame in recorder.frames[-40:]:
                    print(frame[:300], file=sys.stderr)
                page.screenshot(path=str(shots / f"user-{flow}-failed.png"))
                raise
            seen.update(recorder.dump())
            finish(seen)
        finally:
            browser.close()


# ================================== the test's side ==================================


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
    assert any("/static/app.js" in body for body in seen["bodies"])
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
        __file__, flow, service.url + "/", str(shots), json.dumps(extra), handlers=handlers or {}
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
    assert settings.json() == {
        "auto_reply": True,
        "auto_reply_prompt": "Você responde pela Padaria Sol. Seja breve.",
    }


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

        from .helpers import eventually

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


if __name__ == "__main__":
    _drive(sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]))
