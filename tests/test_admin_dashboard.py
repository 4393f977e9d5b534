"""The operators' dashboard: `GET /admin` (a page without data or secret) and its live socket
`GET /admin/ws?token=<admin token>`, over plain HTTP/WebSocket and in real headless Chromium
(Debian's package, driven by Playwright): enter the admin token, see the instance open, restart
its actor and see the restart count change without a reload.

This file doubles as the browser script, run in a child process (tests/browser.py says why).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

if __package__:
    from trio_websocket import ConnectionRejected, open_websocket_url

    from .browser import launch, run_browser_script, screenshots_dir
    from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
    from .helpers import http, next_frame, open_instance
else:  # run as the browser script, in a child process: tests/ is sys.path[0]
    from browser import launch


def _drive(url: str, token: str, name: str, screenshots: Path) -> dict[str, str]:
    from playwright.sync_api import expect, sync_playwright

    row = f"tr[data-name='{name}']"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(url)
            before = page.inner_text("#conn")
            page.fill("#token", token)
            page.click("#save")
            page.wait_for_selector("#conn:text-is('live')", timeout=10_000)
            expect(page.locator(f"{row} [data-col=status]")).to_have_text("open", timeout=10_000)
            restarts_before = page.inner_text(f"{row} [data-col=restarts]")
            page.click(f"{row} button[data-action=restart]")
            # The socket's next frame shows it (the page asks for one right after the action).
            expect(page.locator(f"{row} [data-col=restarts]")).to_have_text("1", timeout=10_000)
            expect(page.locator(f"{row} [data-col=actor]")).to_have_text("running", timeout=10_000)
            page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(screenshots / "dashboard-narrow.png"), full_page=True)
            return {
                "before": before,
                "restarts_before": restarts_before,
                "restarts": page.inner_text(f"{row} [data-col=restarts]"),
                "actor": page.inner_text(f"{row} [data-col=actor]"),
                "node": page.inner_text("#node-id"),
                "breaker": page.inner_text("#breaker"),
                "stored": str(page.evaluate("sessionStorage.getItem('auzap-admin-token')")),
            }
        finally:
            browser.close()


async def test_dashboard_restarts_an_actor_in_a_real_browser(
    runner: ServiceRunner, tmp_path: Path
) -> None:
    service = await runner.start()
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url, uuid.uuid4(), "5511900000001")
    shots = screenshots_dir(tmp_path)
    seen = await run_browser_script(__file__, service.url + "/admin", ADMIN_TOKEN, name, str(shots))
    assert seen["before"] == "no token"
    assert seen["restarts_before"] == "0"
    assert seen["restarts"] == "1" and seen["actor"] == "running"
    assert seen["node"] not in ("", "—")
    assert seen["breaker"] == "closed"
    assert seen["stored"] == ADMIN_TOKEN  # sessionStorage: gone with the tab
    assert (shots / "dashboard.png").stat().st_size > 10_000


async def test_admin_socket_needs_the_token_and_the_page_holds_no_secret(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    ws_base = service.url.replace("http://", "ws://") + "/admin/ws"
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url, uuid.uuid4(), "5511900000002")
        page = await client.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in page.headers
    for secret in (ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET, SIM_API_KEY):
        assert secret not in page.text
    for url in (ws_base, ws_base + "?token=", ws_base + "?token=wrong-" + ADMIN_TOKEN):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url):
                pass
        assert rejected.value.status_code == 401, url
    async with open_websocket_url(f"{ws_base}?token={ADMIN_TOKEN}") as ws:
        frame = await next_frame(ws)
        assert frame["type"] == "tree"
        [actor] = [a for a in frame["data"]["actors"] if a["instance_name"] == name]
        assert actor["status"] == "open" and actor["restarts"] == 0
        # After an action the page asks for a fresh tree at once instead of waiting 2 s.
        async with http(service.url) as client:
            answer = await client.post(
                f"/admin/instances/{name}/restart",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert answer.status_code == 200, answer.text
        await ws.send_message(json.dumps({"type": "refresh"}))
        frame = await next_frame(ws, timeout=1.5)
        [actor] = [a for a in frame["data"]["actors"] if a["instance_name"] == name]
        assert actor["restarts"] == 1


if __name__ == "__main__":
    print(json.dumps(_drive(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
