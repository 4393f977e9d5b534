"""Crash recovery of the webhook inbox: the process is SIGKILLed while webhooks stream in;
after a restart every event that got a 200 is applied, and none twice."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio

from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .helpers import WEBHOOK_HEADERS, eventually, spawn_service
from .payloads import envelope, text_message

USER = uuid.uuid4()
NAME = f"user_{USER}"


def _start(
    database_url: str, data_dir: Path, evolution_url: str
) -> tuple[subprocess.Popen[str], str]:
    return spawn_service(database_url, data_dir, EVOLUTION_API_URL=evolution_url)


async def test_sigkill_while_streaming_loses_nothing_applies_once(
    runner: ServiceRunner, database_url: str, tmp_path: Path
) -> None:
    evolution = await runner.simulator()  # the service runs in another process; Evolution here
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        await instances.ensure_instance(pool, NAME, USER, None)
    proc, url = await trio.to_thread.run_sync(_start, database_url, tmp_path / "data", evolution)
    acked: set[str] = set()
    total = 600
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:

            async def stream(worker: int) -> None:
                for n in range(worker, total, 8):
                    wa_id = f"3EB0{n:016X}"
                    body = envelope(
                        "messages.upsert",
                        NAME,
                        text_message(wa_id, f"55119{n:08d}@s.whatsapp.net", f"mensagem {n}"),
                    )
                    try:
                        answer = await client.post(
                            "/api/webhook/whatsapp",
                            json=body,
                            headers=WEBHOOK_HEADERS,
                        )
                    except httpx.TransportError:
                        return  # the process is gone
                    if answer.status_code == 200:
                        acked.add(wa_id)
                    if len(acked) >= 200 and proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)

            async with trio.open_nursery() as nursery:
                for worker in range(8):
                    nursery.start_soon(stream, worker)
    finally:
        if proc.poll() is None:
            proc.kill()
        await trio.to_thread.run_sync(proc.wait)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert 200 <= len(acked) < total, len(acked)
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        backlog = await pool.fetchval("SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL")
    print(f"acknowledged {len(acked)}, unapplied at the kill: {backlog}")
    assert backlog > 0, "the kill must leave stored-but-unapplied events for the restart"

    proc, url = await trio.to_thread.run_sync(_start, database_url, tmp_path / "data", evolution)
    try:
        async with open_pool(database_url, min_size=1, max_size=1) as pool:

            async def all_applied() -> bool:
                return not await pool.fetchval(
                    "SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL"
                )

            await eventually(all_applied, timeout=60)
            stored = {
                r["wa_message_id"]: r
                for r in await pool.fetch(
                    "SELECT wa_message_id, count(*) OVER (PARTITION BY wa_message_id) AS copies"
                    " FROM messages WHERE instance_name = $1",
                    NAME,
                )
            }
            attempts: list[Any] = await pool.fetch("SELECT outcome, attempts FROM webhook_inbox")
    finally:
        proc.send_signal(signal.SIGTERM)
        await trio.to_thread.run_sync(proc.wait)
        assert proc.stdout is not None
        proc.stdout.close()
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged events were lost"
    assert all(r["copies"] == 1 for r in stored.values())
    # Each stored event was applied exactly once (a rolled-back apply leaves attempts at 0).
    assert {(r["outcome"], r["attempts"]) for r in attempts} == {("applied", 1)}
    assert len(attempts) == len(stored)
