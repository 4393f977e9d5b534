"""A large inbox backlog is applied in big groups (group commit), in arrival order, exactly once;
a row the database refuses inside a big group is still settled alone, without applying the
rest of its group row by row.  Also the unit of work that crosses the trio->asyncio bridge once
(`store.db.run_on_connection`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio

from auzap_actors.actors.inbox_drain import GROUP_ROWS
from auzap_actors.store.db import open_pool, run_on_connection
from auzap_actors.store.faults import is_transient
from auzap_actors.store.inbox import MAX_ATTEMPTS

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    inbox_pending,
    inbox_settled,
    user_token,
)
from .payloads import envelope, text_message
from .test_inbox_rows import POISON

BACKLOG = 2 * GROUP_ROWS + 500


async def _connect(runner: ServiceRunner) -> str:
    service = await runner.start()
    user = uuid.uuid4()
    async with http(service.url) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200
    await runner.stop()
    return f"user_{user}"


async def _store_while_down(runner: ServiceRunner, name: str, ids: list[str], tag: str) -> None:
    """Text messages (and every tenth a receipt for the message before it) stored in the
    inbox as the webhook route would, in one statement, while no actor runs."""
    keys: list[str] = []
    events: list[str] = []
    payloads: list[str] = []
    for n, wa_id in enumerate(ids):
        chat = f"5511977{n % 7:06d}@s.whatsapp.net"
        keys.append(f"{tag}-{n}")
        events.append("messages.upsert")
        payloads.append(
            json.dumps(envelope("messages.upsert", name, text_message(wa_id, chat, f"texto {n}")))
        )
        if n % 10 == 9:
            receipt = {"keyId": wa_id, "remoteJid": chat, "fromMe": False, "status": "READ",
                       "participant": None}  # fmt: skip
            keys.append(f"{tag}-{n}-read")
            events.append("messages.update")
            payloads.append(json.dumps(envelope("messages.update", name, receipt)))
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(
            "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
            " SELECT k, $1, e, p::jsonb FROM unnest($2::text[], $3::text[], $4::text[])"
            " WITH ORDINALITY AS u(k, e, p, n) ORDER BY n",
            name,
            keys,
            events,
            payloads,
        )


async def _commits(runner: ServiceRunner, tag: str) -> dict[str, Any]:
    (row,) = await fetch_rows(
        runner.database_url,
        "SELECT count(*) FILTER (WHERE outcome = 'applied') AS applied,"
        " count(DISTINCT applied_at) FILTER (WHERE outcome = 'applied') AS commits"
        " FROM webhook_inbox WHERE dedup_key LIKE $1",
        f"{tag}-%",
    )
    return dict(row)


async def test_a_large_backlog_is_applied_in_big_groups_in_arrival_order(
    runner: ServiceRunner,
) -> None:
    name = await _connect(runner)
    ids = [f"3EB0BACK{n:08d}" for n in range(BACKLOG)]
    await _store_while_down(runner, name, ids, "backlog")
    await runner.start()
    await eventually(lambda: inbox_settled(runner.database_url, name), timeout=60)
    stored = await fetch_rows(
        runner.database_url,
        "SELECT wa_message_id, status FROM messages WHERE instance_name = $1 ORDER BY seq",
        name,
    )
    assert [r["wa_message_id"] for r in stored] == ids  # each once, in arrival order
    read = {ids[n] for n in range(9, BACKLOG, 10)}
    assert {r["wa_message_id"] for r in stored if r["status"] == "read"} == read
    # Group commit: a few transactions of up to GROUP_ROWS rows, not one per row.
    counts = await _commits(runner, "backlog")
    assert counts["applied"] == BACKLOG + len(read)
    assert counts["commits"] <= -(-counts["applied"] // GROUP_ROWS)
    conversations = await fetch_rows(
        runner.database_url,
        "SELECT sum(unread_count) AS unread, count(*) AS n FROM conversations"
        " WHERE instance_name = $1",
        name,
    )
    assert conversations == [{"unread": BACKLOG, "n": 7}]


async def _stored_ids(runner: ServiceRunner, name: str) -> list[str]:
    """The WhatsApp ids of the instance's stored messages, in arrival order."""
    stored = await fetch_rows(
        runner.database_url,
        "SELECT wa_message_id FROM messages WHERE instance_name = $1 ORDER BY seq",
        name,
    )
    return [r["wa_message_id"] for r in stored]


async def test_a_hot_instance_answers_its_user_between_turns_of_its_backlog(
    runner: ServiceRunner,
) -> None:
    """A backlog that arrives while the actor runs is applied a turn (GROUP_ROWS rows) at a
    time: a call queued meanwhile is answered after the turn in progress, not after the whole
    backlog, and the backlog is still applied once each, in order, without another doorbell."""
    user = uuid.uuid4()
    name = f"user_{user}"
    service = await runner.start()
    async with http(service.url, timeout=60) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200
        ids = [f"3EB0HOTB{n:08d}" for n in range(8 * GROUP_ROWS)]
        await _store_while_down(runner, name, ids[:-1], "hot")  # stored, nobody rang yet
        last = envelope(
            "messages.upsert", name, text_message(ids[-1], "5511977000000@s.whatsapp.net", "fim")
        )
        rang = await client.post("/api/webhook/whatsapp", json=last, headers=WEBHOOK_HEADERS)
        assert rang.status_code == 200
        changed = await client.patch(
            "/api/whatsapp/settings", headers=auth(user_token(user)), json={"auto_reply": False}
        )
        assert changed.status_code == 200
        left = await inbox_pending(runner.database_url, name)
    # Answered between turns: most of the backlog was still waiting (before this change the
    # call waited for all of it).
    assert left >= 4 * GROUP_ROWS, left
    await eventually(lambda: inbox_settled(runner.database_url, name), timeout=60)
    assert await _stored_ids(runner, name) == ids


async def test_a_poisoned_row_in_a_big_group_is_settled_alone_and_the_rest_in_groups(
    runner: ServiceRunner,
) -> None:
    name = await _connect(runner)
    ids = [f"3EB0BIGP{n:08d}" for n in range(GROUP_ROWS)]
    ids[GROUP_ROWS * 2 // 3] = "POISON"
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(POISON)
    await _store_while_down(runner, name, ids, "bigpoison")
    await runner.start()
    await eventually(lambda: inbox_settled(runner.database_url, name), timeout=60)
    assert await _stored_ids(runner, name) == [i for i in ids if i != "POISON"]
    (poisoned,) = await fetch_rows(
        runner.database_url,
        "SELECT outcome, attempts, applied_at IS NOT NULL AS settled FROM webhook_inbox"
        " WHERE instance_name = $1 AND payload -> 'data' -> 'key' ->> 'id' = 'POISON'",
        name,
    )
    assert poisoned == {"outcome": "error", "attempts": MAX_ATTEMPTS, "settled": True}
    counts = await _commits(runner, "bigpoison")
    assert counts["applied"] == GROUP_ROWS - 1 + GROUP_ROWS // 10
    # The failing group is split in halves down to the bad row: a few dozen transactions
    # (two per level of the split), not one per row of the group.
    assert counts["commits"] <= 2 * (GROUP_ROWS.bit_length() + 1)


async def test_a_unit_of_work_runs_on_one_connection_and_its_errors_cross_unchanged(
    database_url: str,
) -> None:
    async with open_pool(database_url, min_size=1, max_size=1, acquire_timeout_s=0.2) as pool:

        async def two_statements(conn: Any) -> tuple[int, int]:
            async with conn.transaction():
                first = await conn.fetchval("SELECT pg_backend_pid()")
                second = await conn.fetchval("SELECT pg_backend_pid()")
            return first, second

        first, second = await run_on_connection(pool, two_statements)
        assert first == second

        async def refused(conn: Any) -> None:
            await conn.execute("SELECT 1/0")

        with pytest.raises(asyncpg.DivisionByZeroError):
            await run_on_connection(pool, refused)

        # The pool's only connection is held: the unit's acquire gives up, as a transient
        # error (the database is "not there" for it right now).
        async with pool.acquire():
            with pytest.raises(TimeoutError) as waited:
                await run_on_connection(pool, two_statements)
        assert is_transient(waited.value)


async def test_the_loop_runs_every_queued_asyncio_callback_per_turn(database_url: str) -> None:
    """After a pool is opened, callbacks already queued on the asyncio side run in the loop's
    next turn, not one per trio scheduler round."""
    async with open_pool(database_url, min_size=1, max_size=1):
        loop = trio_asyncio.current_loop.get()
        ran: list[int] = []
        for n in range(20):
            loop.call_soon(ran.append, n)
        # A few scheduler rounds: each gives the loop's task one turn at most.
        for _ in range(3):
            await trio.lowlevel.cancel_shielded_checkpoint()
        assert ran == list(range(20))
