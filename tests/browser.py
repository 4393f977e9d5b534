"""Real headless Chromium for the page tests: Debian's `chromium` package driven by Playwright.

Playwright's sync API runs its own asyncio loop, which cannot share a process with the
service's trio-asyncio loop: each page test file doubles as a browser script that the test runs
in a child process (`run_browser_script`); the script prints what it saw as one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import trio

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Launch flags that work here as root (STACK-NOTES).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """Debian's chromium, headless (Playwright's own browser download does not work here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


def screenshots_dir(tmp_path: Path) -> Path:
    """Where the page tests save their screenshots: AUZAP_SCREENSHOTS, else the test's tmp."""
    return Path(os.environ.get("AUZAP_SCREENSHOTS", tmp_path))


async def run_browser_script(script: str, *args: str) -> dict[str, Any]:
    """Run a page test file as the browser script with `args`; what it printed, as JSON."""
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, script, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen
