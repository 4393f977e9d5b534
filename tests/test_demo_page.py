"""The demo page in real headless Chromium (Debian's package, driven by Playwright): demo
login, Connect WhatsApp, the QR appears, Simulate phone scan, the page says Connected.

This file doubles as the browser script, run in a child process (tests/browser.py says why).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__:
    from .browser import launch, run_browser_script, screenshots_dir
    from .conftest import ServiceRunner
    from .helpers import fetch_rows
else:  # run as the browser script, in a child process: tests/ is sys.path[0]
    from browser import launch


def _drive(url: str, screenshots: Path) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(url)
            page.click("#login")
            page.click("#connect")
            page.wait_for_selector("#qr:not([hidden])", timeout=10_000)
            qr_src = page.get_attribute("#qr", "src") or ""
            waiting = page.inner_text("#status")
            page.screenshot(path=str(screenshots / "qr.png"))
            page.click("#scan")
            page.wait_for_selector("#status[data-status='open']", timeout=10_000)
            page.wait_for_selector("#notes li", timeout=10_000)
            page.screenshot(path=str(screenshots / "connected.png"))
            # The auto-reply toggle (demo mode answers with its offline responder).
            page.check("#auto-reply")
            page.fill("#prompt", "We are a bakery.")
            page.click("#save-settings")
            page.wait_for_selector("#auto-reply-state[data-on='true']", timeout=10_000)
            return {
                "auto_reply": page.inner_text("#auto-reply-state"),
                "qr": qr_src[:22],
                "waiting": waiting,
                "status": page.inner_text("#status"),
                "phone": page.inner_text("#phone"),
                "note": page.inner_text("#notes li"),
                "qr_hidden": str(page.is_hidden("#qr")),
            }
        finally:
            browser.close()


async def test_demo_page_connects_in_a_real_browser(runner: ServiceRunner, tmp_path: Path) -> None:
    service = await runner.start(demo=True)
    shots = screenshots_dir(tmp_path)
    seen = await run_browser_script(__file__, service.url + "/", str(shots))
    assert seen["qr"] == "data:image/png;base64,"
    assert seen["waiting"] == "Scan the QR code"
    assert seen["status"] == "Connected" and seen["phone"] == "(+5511987654321)"
    assert seen["note"].startswith("WhatsApp connected")
    assert seen["qr_hidden"] == "True"
    assert seen["auto_reply"] == "on"
    stored = await fetch_rows(
        runner.database_url, "SELECT auto_reply, auto_reply_prompt FROM whatsapp_instances"
    )
    assert stored == [{"auto_reply": True, "auto_reply_prompt": "We are a bakery."}]
    assert (shots / "connected.png").stat().st_size > 1000


if __name__ == "__main__":
    print(json.dumps(_drive(sys.argv[1], Path(sys.argv[2]))))
