"""The command line: `auzap-actors serve` with embedded defaults starts, prints its URL and
a demo token, answers /healthz, and stops cleanly on SIGTERM with no PostgreSQL left."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from auzap_actors.web.auth import decode_user_token


def _read_banner(proc: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """The start-up banner (it is printed in one write, so once it starts, read it whole)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no banner within {timeout} s (exit code {proc.poll()})"
    lines: dict[str, str] = {}
    while "admin token" not in lines:
        line = proc.stdout.readline()
        assert line, f"output ended before the banner was complete: {lines}"
        if "serving on" in line:
            lines["url"] = line.rsplit(" ", 1)[1].strip()
        elif ":" in line:
            key, _, value = line.strip().partition(":")
            lines[key.strip()] = value.strip()
    return lines


def _postgres_for(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(str(pgdata) in part for part in cmdline) and "postgres" in (proc.info["name"] or ""):
            found.append(proc)
    return found


def test_serve_demo_mode_and_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "auzap"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.pop("DATABASE_URL", None)
    env.update({"AUZAP_DATA_DIR": str(data_dir), "AUZAP_PORT": "0"})
    with subprocess.Popen(
        [sys.executable, "-m", "auzap_actors", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        _check_serving_then_sigterm(proc, data_dir)


def _check_serving_then_sigterm(proc: subprocess.Popen[str], data_dir: Path) -> None:
    try:
        banner = _read_banner(proc, timeout=60)
        assert banner["url"].startswith("http://127.0.0.1:")
        assert banner["Evolution sim"].startswith("http://127.0.0.1:")
        # The demo token is a real user token for the demo user (checked with the same code
        # the service uses, but we do not know the random secret: only its shape here).
        assert banner["demo user token"].count(".") == 2 and banner["admin token"]
        health = httpx.get(banner["url"] + "/healthz", timeout=5)
        assert health.status_code == 200
        ready = httpx.get(banner["url"] + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        me = httpx.get(
            banner["url"] + "/api/whatsapp/instance",
            timeout=5,
            headers={"Authorization": f"Bearer {banner['demo user token']}"},
        )
        assert me.status_code == 404, me.text  # authenticated (not 401), no instance yet
        assert _postgres_for(data_dir / "pg"), "embedded PostgreSQL runs while serving"

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < 5, f"shutdown took {elapsed:.2f} s"
        assert not _postgres_for(data_dir / "pg"), "no postgres left running"
        assert not (data_dir / "pg" / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVOLUTION_API_URL": "http://evolution:8080"}, "EVOLUTION_API_KEY"),
        ({"DATABASE_URL": "postgresql://db/auzap"}, "EVOLUTION_API_URL"),
        ({"AUZAP_DEMO": "1", "AUZAP_JWT_SECRET": "s" * 40}, "AUZAP_JWT_SECRET"),
        (
            {
                "EVOLUTION_API_URL": "http://evolution:8080",
                "EVOLUTION_API_KEY": "k",
                "AUZAP_JWT_SECRET": "same" * 10,
                "AUZAP_WEBHOOK_SECRET": "same" * 10,
                "AUZAP_ADMIN_TOKEN": "a" * 20,
            },
            "AUZAP_WEBHOOK_SECRET",
        ),
    ],
    ids=["no-evolution-key", "database-without-evolution", "demo-with-a-secret", "equal-secrets"],
)
def test_bad_configuration_stops_with_one_clear_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    clean.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "auzap_actors", "serve"],
        env={**clean, **env, "AUZAP_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_token_command_mints_a_token_the_service_accepts() -> None:
    secret = "cli-secret-" + "x" * 40
    user = "7f0c5a4e-8f55-4c47-9d6e-1d2a3b4c5d6e"
    result = subprocess.run(
        [sys.executable, "-m", "auzap_actors", "token", "--user", user],
        env=dict(os.environ, AUZAP_JWT_SECRET=secret),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert str(decode_user_token(result.stdout.strip(), secret).user_id) == user
