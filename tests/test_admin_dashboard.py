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
from typing import Any

import pytest

if __package__:
    import trio
    from trio_websocket import ConnectionRejected, open_websocket_url

    from .browser import launch, run_browser_script, screenshots_dir
    from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET, ServiceRunner
    from .faultdb import FaultPostgres, fault_db_fixture, fault_postgres_fixture  # noqa: F401
    from .helpers import WEBHOOK_HEADERS, eventually, http, next_frame, open_instance
    from .payloads import envelope, text_message
else:  # run as the browser script, in a child process: tests/ is sys.path[0]
    from browser import launch


PENDING = 6  # webhooks posted while the actor is stopped
PEER = "5511988887777@s.whatsapp.net"


def _chart(page: Any) -> list[dict[str, Any]]:
    """The events-per-minute chart as drawn: one entry per minute bar."""
    found: list[dict[str, Any]] = page.eval_on_selector_all(
        "#epm-chart g",
        """gs => gs.map(g => ({accepted: +g.dataset.accepted, duplicates: +g.dataset.duplicates,
            rejected: +g.dataset.rejected, current: g.classList.contains('current'),
            bars: g.querySelectorAll('rect:not(.hit)').length}))""",
    )
    return found


def _drive(url: str, token: str, name: str, screenshots: Path) -> dict[str, Any]:
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
            expect(page.locator(f"{row} [data-col=actor]")).to_have_text("stopped")
            # The test stopped the actor and posted webhooks for it: they wait in the inbox.
            expect(page.locator("#lag-tile")).to_have_attribute("data-tone", "warn")
            lagging = {
                "lag": page.inner_text("#inbox-lag"),
                "pending": page.inner_text("#inbox-pending"),
                "pending_tone": page.get_attribute("#pending-tile", "data-tone"),
                "chart": _chart(page),
                "epm_total": page.inner_text("#epm-total"),
                "epm_rejected": page.inner_text("#epm-rejected"),
                "writer_rows": page.inner_text("#writer [data-key=rows]"),
                "hub_sockets": page.inner_text("#hub [data-key=open_sockets]"),
                "actors_stopped": page.inner_text("#actor-chips [data-state=stopped]"),
            }
            page.screenshot(path=str(screenshots / "dashboard-lagging.png"), full_page=True)
            page.click(f"{row} button[data-action=start]")
            # Started again, the actor applies its backlog: the lag falls back under 5 s.
            expect(page.locator("#lag-tile")).to_have_attribute("data-tone", "ok", timeout=10_000)
            expect(page.locator("#inbox-pending")).to_have_text("0", timeout=10_000)
            expect(page.locator(f"{row} [data-col=status]")).to_have_text("open", timeout=10_000)
            restarts_before = page.inner_text(f"{row} [data-col=restarts]")
            page.click(f"{row} button[data-action=restart]")
            # The socket's next frame shows it (the page asks for one right after the action).
            expect(page.locator(f"{row} [data-col=restarts]")).to_have_text(
                str(int(restarts_before) + 1), timeout=10_000
            )
            expect(page.locator(f"{row} [data-col=actor]")).to_have_text("running", timeout=10_000)
            page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(screenshots / "dashboard-narrow.png"), full_page=True)
            return {
                **lagging,
                "lag_after": page.inner_text("#inbox-lag"),
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
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url, uuid.uuid4(), "5511900000001")
        # Stopped, the actor applies nothing: what arrives for it waits in the inbox.
        answer = await client.post(f"/admin/instances/{name}/stop", headers=admin)
        assert answer.status_code == 200, answer.text
        bodies = [
            envelope("messages.upsert", name, text_message(f"3EB0DASH{i:04d}", PEER, f"oi {i}"))
            for i in range(PENDING)
        ]
        for body in bodies:
            answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert answer.status_code == 200, answer.text
        again = await client.post("/api/webhook/whatsapp", json=bodies[0], headers=WEBHOOK_HEADERS)
        assert again.status_code == 200  # a duplicate delivery
        wrong = await client.post("/api/webhook/whatsapp", json=bodies[1], headers={})
        assert wrong.status_code == 401  # a rejected one

        async def lagging() -> dict[str, Any] | None:
            tree = (await client.get("/admin/tree", headers=admin)).json()
            return tree if tree["inbox"]["lag_seconds"] > 5.5 else None

        tree = await eventually(lagging, timeout=15, interval=0.25)
    inbox = tree["inbox"]
    assert inbox["pending"] >= PENDING and inbox["pending_capped"] is False
    assert len(inbox["events_per_minute"]) == 30
    recent = inbox["events_per_minute"][-2:]  # the posts may straddle a minute boundary
    assert sum(m["accepted"] for m in recent) >= PENDING + 1
    assert sum(m["duplicates"] for m in recent) == 1
    assert sum(m["rejected"] for m in recent) == 1
    assert tree["supervisor"]["child_stats"]["inbox_writer"]["rows"] >= PENDING
    shots = screenshots_dir(tmp_path)
    seen = await run_browser_script(__file__, service.url + "/admin", ADMIN_TOKEN, name, str(shots))
    assert seen["before"] == "no token"
    # While the actor was stopped: lag over 5 s in the warning colour, the pending rows.
    assert seen["lag"].endswith("s") and float(seen["lag"].rstrip("s")) > 5
    assert int(seen["pending"]) >= PENDING
    chart = seen["chart"]
    assert len(chart) == 30 and chart[-1]["current"]
    drawn = [m for m in chart if m["bars"]]
    # Bars for the minute of the posts: the current one (or the one before, at a boundary).
    assert drawn and chart.index(drawn[-1]) >= 28
    assert sum(m["accepted"] for m in drawn) >= PENDING + 1
    assert int(seen["epm_total"]) >= PENDING + 1 and int(seen["epm_rejected"]) == 1
    assert int(seen["writer_rows"]) >= PENDING and int(seen["hub_sockets"]) == 0
    assert seen["actors_stopped"] == "1"
    # Started again, it applied them: the lag is back to a fraction of a second.
    assert float(seen["lag_after"].rstrip("s")) < 5
    assert int(seen["restarts"]) == int(seen["restarts_before"]) + 1
    assert seen["actor"] == "running"
    assert seen["node"] not in ("", "—")
    assert seen["breaker"] == "closed"
    assert seen["stored"] == ADMIN_TOKEN  # sessionStorage: gone with the tab
    assert (shots / "dashboard.png").stat().st_size > 10_000
    assert (shots / "dashboard-lagging.png").stat().st_size > 10_000


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


async def test_the_tree_answers_during_a_database_outage(
    fault_postgres: FaultPostgres, fault_db: str, tmp_path: Path
) -> None:
    """The tree is what an operator reads while the database is away: it answers at once,
    with the inbox figures unknown (null) and the per-minute counts still there."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with trio.open_nursery() as nursery:
        runner = ServiceRunner(nursery, fault_db, tmp_path)
        service = await runner.start()
        async with http(service.url) as client:
            up = (await client.get("/admin/tree", headers=admin)).json()["inbox"]
            await trio.to_thread.run_sync(fault_postgres.stop)
            started = trio.current_time()
            answer = await client.get("/admin/tree", headers=admin)
            took_s = trio.current_time() - started
            await trio.to_thread.run_sync(fault_postgres.start)
            back = await eventually(lambda: _inbox_known(client, admin), timeout=15, interval=0.25)
        await runner.stop()
        nursery.cancel_scope.cancel()
    print(f"\n/admin/tree with the database stopped answered in {took_s * 1000:.0f} ms")
    assert up["lag_seconds"] == 0 and up["pending"] == 0 and up["pending_cap"] == 10_000
    assert answer.status_code == 200, answer.text
    down = answer.json()
    assert down["failed_rows_unknown"] is True
    assert down["inbox"]["lag_seconds"] is None and down["inbox"]["pending"] is None
    assert len(down["inbox"]["events_per_minute"]) == 30
    # One bounded wait for the database (DB_WAIT_S, 2 s), not one per query.
    assert took_s < 3.0
    assert back["lag_seconds"] == 0 and back["pending"] == 0


async def _inbox_known(client: Any, admin: dict[str, str]) -> dict[str, Any] | None:
    inbox: dict[str, Any] = (await client.get("/admin/tree", headers=admin)).json()["inbox"]
    return inbox if inbox["pending"] is not None else None


if __name__ == "__main__":
    print(json.dumps(_drive(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
