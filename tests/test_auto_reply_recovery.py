"""Auto-reply exactly once across crashes: the service is SIGKILLed after a reply was decided
and before it was sent, then again while its send is in flight; after each restart exactly one
reply reaches the simulator.  And the two ways an interrupted send is resumed (its echo is
there: settled without a send; no echo after the grace: sent once), made deterministic by
writing the interrupted state before the service starts."""

from __future__ import annotations

import signal
import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .fake_openai import FakeOpenAI, serve_fake_openai
from .helpers import (
    auth,
    eventually,
    fetch_rows,
    http,
    open_instance,
    sim_post_ok,
    spawn_service,
    user_token,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(database_url: str, data_dir: Path, env_extra: dict[str, str]) -> subprocess.Popen[str]:
    proc, _ = spawn_service(
        database_url, data_dir, **{"AUZAP_HEALTH_INTERVAL_S": "86400", **env_extra}
    )
    return proc


async def _end(proc: subprocess.Popen[str], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    await trio.to_thread.run_sync(proc.wait)
    assert proc.stdout is not None
    proc.stdout.close()


async def _states(database_url: str, name: str) -> list[str]:
    rows = await fetch_rows(
        database_url, "SELECT state FROM auto_replies WHERE instance_name = $1 ORDER BY id", name
    )
    return [r["state"] for r in rows]


async def test_sigkill_after_the_decision_and_during_the_send_gives_exactly_one_reply(
    runner: ServiceRunner, database_url: str, tmp_path: Path
) -> None:
    evolution = await runner.simulator()
    fake = FakeOpenAI()
    ai_url = await runner.nursery.start(serve_fake_openai, fake)
    port = _free_port()  # the same URL across restarts, as in production: echoes find us
    env = {
        "EVOLUTION_API_URL": evolution,
        "AUZAP_PORT": str(port),
        "AUZAP_AI_BASE_URL": ai_url,
        "AUZAP_AI_DEBOUNCE_S": "2",
        "AUZAP_AI_TYPING_MS": "0",
        "AUZAP_AI_RESEND_GRACE_S": "12",
    }
    url = f"http://127.0.0.1:{port}"
    user = uuid.uuid4()
    name = f"user_{user}"
    data = tmp_path / "data"
    proc = await trio.to_thread.run_sync(_start, database_url, data, env)
    try:
        async with http(url) as client, http(evolution) as sim:
            await open_instance(client, evolution, user, "5511900000201")
            on = await client.patch(
                "/api/whatsapp/settings", headers=auth(user_token(user)), json={"auto_reply": True}
            )
            assert on.status_code == 200, on.text
            await sim_post_ok(
                sim, f"/_sim/instances/{name}/inbound", {"from": "5511988880201", "text": "Oi"}
            )
            # Killed as soon as the decision is committed (the reply is due 2 s later).
            await eventually(lambda: _states(database_url, name), timeout=10, interval=0.005)
            await _end(proc, signal.SIGKILL)
            assert await _states(database_url, name) == ["decided"]
            assert (await sim.get("/_sim/sent")).json() == [] and fake.requests == []

            proc = await trio.to_thread.run_sync(_start, database_url, data, env)
            await eventually(lambda: _sent_to(sim, name, 1), timeout=15)
            await eventually(lambda: _all_sent(database_url, name, 1), timeout=5)
            print(f"after the first kill: {len(fake.requests)} provider request(s)")

            # Second kill: Evolution answers slowly, so the send is in flight when it lands.
            await sim_post_ok(sim, "/_sim/faults", {"mode": "slow", "latency_ms": 1500})
            await sim_post_ok(
                sim,
                f"/_sim/instances/{name}/inbound",
                {"from": "5511988880202", "text": "Olá"},
            )

            async def sending() -> bool:
                return "sending" in await _states(database_url, name)

            await eventually(sending, timeout=15, interval=0.005)
            # Into sendText's wait (the typing indicator took the first 1.5 s): the request
            # has left; whether the simulator still sends it after the client is gone is up
            # to the server, as with the real one.
            await trio.sleep(2.2)
            await _end(proc, signal.SIGKILL)
            await trio.sleep(1.0)
            went = len([s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name])
            print(f"second kill during the send: the simulator sent {went - 1} meanwhile")
            await sim_post_ok(sim, "/_sim/faults", {"mode": "none"})
            proc = await trio.to_thread.run_sync(_start, database_url, data, env)
            await eventually(lambda: _all_sent(database_url, name, 2), timeout=40)
            print(f"after the second kill: {len(fake.requests)} requests")

            # Third kill: the moment Evolution has sent the reply, before the service records
            # it (a race: when the kill is late the reply was recorded; when it is in time the
            # restarted service finds the send's echo, which Evolution re-delivers).
            await sim_post_ok(
                sim,
                f"/_sim/instances/{name}/inbound",
                {"from": "5511988880203", "text": "Boa tarde"},
            )
            await eventually(lambda: _sent_to(sim, name, 3), timeout=15, interval=0.002)
            await _end(proc, signal.SIGKILL)
            at_kill = await _states(database_url, name)
            print(f"third kill, the reply already sent by Evolution was: {at_kill[-1]}")
            proc = await trio.to_thread.run_sync(_start, database_url, data, env)
            await eventually(lambda: _all_sent(database_url, name, 3), timeout=40)
            await trio.sleep(3)  # a late echo or a second send would show by now
            sent = [s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name]
            assert sorted(s["remote_jid"] for s in sent) == [
                "5511988880201@s.whatsapp.net",
                "5511988880202@s.whatsapp.net",
                "5511988880203@s.whatsapp.net",
            ]
    finally:
        await _end(proc, signal.SIGTERM)
    stored = await fetch_rows(
        database_url,
        "SELECT count(*) AS n FROM messages WHERE instance_name = $1 AND from_me AND auto_reply",
        name,
    )
    assert stored == [{"n": 3}]


async def _sent_to(sim: Any, name: str, wanted: int) -> bool:
    sent = [s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name]
    assert len(sent) <= wanted, sent
    return len(sent) == wanted


async def _all_sent(database_url: str, name: str, wanted: int) -> bool:
    return await _states(database_url, name) == ["sent"] * wanted


async def test_an_interrupted_send_is_settled_by_its_echo_or_sent_once_after_the_grace(
    runner: ServiceRunner, database_url: str
) -> None:
    fake = FakeOpenAI()
    ai_url = await runner.nursery.start(serve_fake_openai, fake)
    env = {"AUZAP_AI_BASE_URL": ai_url, "AUZAP_AI_TYPING_MS": "0", "AUZAP_AI_RESEND_GRACE_S": "1"}
    service = await runner.start(**env)
    user = uuid.uuid4()
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url or "", user, "5511900000202")
    await runner.stop()
    # Two replies left `sending` by a crash: the first one's echo (our own message with its
    # text, after the attempt) is stored; the second one never left.
    now = datetime.now(UTC)
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        record = await instances.find_by_name(pool, name)
        assert record is not None
        await pool.execute(
            "UPDATE whatsapp_instances SET auto_reply = true WHERE instance_name = $1", name
        )
        conversation = await pool.fetchval(
            "INSERT INTO conversations (instance_name, remote_jid) VALUES ($1, $2) RETURNING id",
            name,
            "5511988880301@s.whatsapp.net",
        )
        await pool.execute(
            "INSERT INTO messages (instance_name, conversation_id, remote_jid, wa_message_id,"
            " from_me, type, text, status, status_rank, sent_at, raw) VALUES ($1, $2, $3,"
            " 'ECHO0001', true, 'text', 'Já vai!', 'server_ack', 2, $4, '{}'::jsonb)",
            name,
            conversation,
            "5511988880301@s.whatsapp.net",
            now,
        )
        for trigger, chat, text in (
            ("IN0001", "5511988880301@s.whatsapp.net", "Já vai!"),
            ("IN0002", "5511988880302@s.whatsapp.net", "Um momento!"),
        ):
            await pool.execute(
                "INSERT INTO auto_replies (instance_name, trigger_wa_id, chat_jid, state,"
                " due_at, decided_at, send_started_at, reply_text)"
                " VALUES ($1, $2, $3, 'sending', $4, $4, $5, $6)",
                name,
                trigger,
                chat,
                now - timedelta(seconds=5),
                now - timedelta(seconds=2),
                text,
            )
    service = await runner.start(**env)

    async def settled() -> bool:
        rows = await fetch_rows(
            database_url,
            "SELECT trigger_wa_id, state, reply_wa_id FROM auto_replies"
            " WHERE instance_name = $1 ORDER BY id",
            name,
        )
        return all(r["state"] == "sent" for r in rows) and bool(rows)

    await eventually(settled, timeout=10)
    async with http(service.simulator_url or "") as sim:
        sent = [s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name]
    assert [(s["remote_jid"], s["text"]) for s in sent] == [
        ("5511988880302@s.whatsapp.net", "Um momento!")
    ]
    rows = await fetch_rows(
        database_url,
        "SELECT a.trigger_wa_id, a.reply_wa_id, m.auto_reply FROM auto_replies a"
        " JOIN messages m ON m.instance_name = a.instance_name AND m.wa_message_id = a.reply_wa_id"
        " WHERE a.instance_name = $1 ORDER BY a.id",
        name,
    )
    assert rows == [
        {"trigger_wa_id": "IN0001", "reply_wa_id": "ECHO0001", "auto_reply": True},
        {"trigger_wa_id": "IN0002", "reply_wa_id": sent[0]["id"], "auto_reply": True},
    ]
    assert fake.requests == []  # the texts were composed before the crash
