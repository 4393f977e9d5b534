"""Real headless Chromium for the page tests: Debian's `chromium` package driven by Playwright.

Playwright's sync API runs its own asyncio loop, which cannot share a process with the
service's trio-asyncio loop: the browser side of a page test is a script that the test runs in
a child process (`run_browser_script`: the test file itself, which prints what it saw as one
JSON object; `run_browser_session`: a script that may also ask the test to act mid-flow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
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


# ---- A browser script that talks with its test while it runs ----------------------------------
#
# Some flows need the test to act in the middle (deliver a message through the simulator,
# restart the service): the script prints `{"ask": <name>, "args": {...}}` as one line and waits
# for the test's one-line JSON answer on its stdin; its last line is `{"result": ...}`.

Handler = Callable[..., Awaitable[Any]]


def ask(name: str, **args: Any) -> Any:
    """In the browser script: have the test run its handler `name`; its answer."""
    print(json.dumps({"ask": name, "args": args}), flush=True)
    line = sys.stdin.readline()
    if not line:
        raise RuntimeError("the test went away")
    answer = json.loads(line)
    if "error" in answer:
        raise RuntimeError(f"the test's handler {name} failed: {answer['error']}")
    return answer.get("ok")


def finish(result: Any) -> None:
    """In the browser script: hand the result to the test."""
    print(json.dumps({"result": result}), flush=True)


async def run_browser_session(
    script: str, *args: str, handlers: dict[str, Handler], timeout: float = 180
) -> dict[str, Any]:
    """Run a page test file as a browser script that may `ask` the test to run `handlers`
    while it drives the page; the `result` it `finish`es with."""
    errors = bytearray()
    result: dict[str, Any] | None = None
    with trio.fail_after(timeout):
        process = await trio.lowlevel.open_process(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin and process.stdout and process.stderr
        try:
            async with trio.open_nursery() as nursery:

                async def drain_stderr() -> None:
                    assert process.stderr
                    async for chunk in process.stderr:
                        errors.extend(chunk)

                nursery.start_soon(drain_stderr)
                pending = b""
                async for chunk in process.stdout:
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        if "result" in message:
                            result = message["result"]
                            continue
                        try:
                            answer = {"ok": await handlers[message["ask"]](**message["args"])}
                        except Exception as exc:  # told to the script, which fails with it
                            answer = {"error": repr(exc)}
                        await process.stdin.send_all((json.dumps(answer) + "\n").encode())
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
    assert process.returncode == 0, errors.decode(errors="replace")[-4000:]
    assert result is not None, "the browser script finished without a result"
    return result
