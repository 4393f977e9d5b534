"""Retention (store/retention.py): what expires and what is kept, batches that never block
ingest (200k old inbox rows pruned while webhooks keep arriving: run with `-s` for the
figures), the periodic task that never dies, and its settings."""

from __future__ import annotations

import logging
import statistics
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from auzap_actors.config import ConfigError
from auzap_actors.serve import retention_policy
from auzap_actors.store import retention
from auzap_actors.store.db import open_pool
from auzap_actors.store.inbox import InboxEntry, InboxWriter
from auzap_actors.store.retention import Pruned, RetentionPolicy, prune_all, run_retention

from .conftest import ServiceRunner, make_settings
from .helpers import eventually, fetch_rows
from .plans import custom_plan, generic_plan, plan_nodes

DAY = "interval '1 day'"


def inbox_rows(
    n: int, *, name: str, age_days: float, outcome: str | None, applied: bool, start: int = 0
) -> str:
    """One INSERT of `n` inbox rows, received (and, if `applied`, settled) `age_days` ago, with
    a ~400-byte payload like a small messages.upsert."""
    applied_at = f"now() - {age_days} * {DAY}" if applied else "NULL"
    outcome_sql = f"'{outcome}'" if outcome else "NULL"
    return f"""
    INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload, received_at,
      applied_at, outcome, attempts)
    SELECT '{name}-{start}-' || g, '{name}', 'messages.upsert',
      jsonb_build_object('event', 'messages.upsert', 'instance', '{name}',
        'date_time', (now() - {age_days} * {DAY})::text,
        'data', jsonb_build_object('key', jsonb_build_object('remoteJid',
          (5511900000000 + g) || '@s.whatsapp.net', 'fromMe', false, 'id', '3EB0' || g),
          'pushName', 'Ana', 'message', jsonb_build_object('conversation', repeat('x', 200)))),
      now() - {age_days} * {DAY}, {applied_at}, {outcome_sql}, 1
    FROM generate_series(1, {n}) AS g"""


def _patches(n: int, *, age_days: float, tag: str) -> str:
    return f"""
    INSERT INTO message_patches (instance_name, wa_message_id, from_me, status, status_rank,
      created_at)
    SELECT 'user_patches', '{tag}' || g, false, 'read', 3, now() - {age_days} * {DAY}
    FROM generate_series(1, {n}) AS g"""


def _auto_replies(n: int, *, age_days: float, state: str, tag: str) -> str:
    settled = "NULL" if state == "decided" else f"now() - {age_days} * {DAY}"
    return f"""
    INSERT INTO auto_replies (instance_name, trigger_wa_id, chat_jid, state, due_at, decided_at,
      settled_at)
    SELECT 'user_a', '{tag}' || g, 'c@s.whatsapp.net', '{state}', now() - {age_days} * {DAY},
      now() - {age_days} * {DAY}, {settled}
    FROM generate_series(1, {n}) AS g"""


async def count_rows(pool: Any, where: str, table: str = "webhook_inbox") -> int:
    n: int = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}")
    return n


# ---- what expires ---------------------------------------------------------------------------


async def test_what_expires_and_what_is_kept(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=2) as pool:
        for statement in (
            inbox_rows(30, name="user_a", age_days=8, outcome="applied", applied=True),
            inbox_rows(5, name="user_a", age_days=8, outcome="unhandled", applied=True, start=1),
            inbox_rows(5, name="user_a", age_days=8, outcome="deleted", applied=True, start=2),
            inbox_rows(10, name="user_a", age_days=6, outcome="applied", applied=True, start=3),
            inbox_rows(4, name="user_a", age_days=8, outcome="error", applied=True, start=4),
            inbox_rows(3, name="user_a", age_days=31, outcome="error", applied=True, start=5),
            inbox_rows(2, name="user_a", age_days=8, outcome="error", applied=False, start=6),
            inbox_rows(7, name="user_ghost", age_days=8, outcome="orphan", applied=False),
            inbox_rows(6, name="user_ghost", age_days=6, outcome="orphan", applied=False, start=1),
            inbox_rows(9, name="user_b", age_days=40, outcome=None, applied=False),
            _patches(8, age_days=8, tag="OLD"),
            _patches(4, age_days=6, tag="NEW"),
            _auto_replies(6, age_days=31, state="sent", tag="OLD"),
            _auto_replies(2, age_days=8, state="failed", tag="NEW"),
            _auto_replies(3, age_days=40, state="decided", tag="OPEN"),
        ):
            await pool.execute(statement)
        # Small batches: the loop must go round several times per kind.
        policy = RetentionPolicy(batch_size=4, pause_s=0)
        results = {r.kind: r for r in await prune_all(pool, policy)}
        assert {k: r.rows for k, r in results.items()} == {
            "settled inbox rows": 40,
            "failed inbox rows": 3,
            "orphan inbox rows": 7,
            "message patches": 8,
            "settled auto-replies": 6,
        }
        assert results["settled inbox rows"].batches == 40 // 4 + 1
        assert all(r.error is None for r in results.values())
        left = await pool.fetch(
            "SELECT instance_name, outcome, applied_at IS NOT NULL AS settled, count(*) AS n"
            " FROM webhook_inbox GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        assert [tuple(r.values()) for r in left] == [
            ("user_a", "applied", True, 10),  # 6 days old
            ("user_a", "error", False, 2),  # still being retried: pending work
            ("user_a", "error", True, 4),  # failed 8 days ago: kept 30 days
            ("user_b", None, False, 9),  # pending for a known instance: never expires
            ("user_ghost", "orphan", False, 6),
        ]
        assert await count_rows(pool, "true", "message_patches") == 4
        # Failed 8 days ago: kept 30 days; a decision not settled never expires.
        assert await count_rows(pool, "true", "auto_replies") == 2 + 3
        # A second round finds nothing.
        assert sum(r.rows for r in await prune_all(pool, policy)) == 0


async def test_retention_statements_use_their_indexes(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        await pool.execute(
            inbox_rows(20_000, name="user_a", age_days=8, outcome="applied", applied=True)
        )
        await pool.execute(
            inbox_rows(20_000, name="user_a", age_days=1, outcome=None, applied=False, start=1)
        )
        await pool.execute(_patches(20_000, age_days=1, tag="P"))
        await pool.execute(_auto_replies(20_000, age_days=1, state="sent", tag="T"))
        await pool.execute("ANALYZE")
        report = []
        async with pool.acquire() as conn:
            for kind, statement, age_s in RetentionPolicy().kinds():
                for label, plan in (
                    ("custom", await custom_plan(conn, statement, (age_s, 1000))),
                    ("generic", await generic_plan(conn, statement, (age_s, 1000))),
                ):
                    nodes = plan_nodes(plan)
                    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], (kind, label)
                    report.append(
                        f"{kind:20} {label:8} "
                        + ", ".join(
                            sorted(
                                {
                                    f"{n['Node Type']} {n.get('Index Name', n['Relation Name'])}"
                                    for n in nodes
                                    if "Scan" in n["Node Type"] and "Relation Name" in n
                                }
                            )
                        )
                    )
    print("\n" + "\n".join(report))


# ---- acceptance: 200k old rows, ingest never blocked ------------------------------------------


def _summary(latencies: list[float]) -> str:
    if not latencies:
        return "none"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{len(ordered)} webhooks, p50 {statistics.median(ordered) * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


async def test_200k_old_rows_are_pruned_in_batches_without_blocking_ingest(
    database_url: str,
) -> None:
    old = 200_000
    async with open_pool(database_url, min_size=2, max_size=3) as pool:
        filled = trio.current_time()
        await pool.execute(
            inbox_rows(old, name="user_busy", age_days=8, outcome="applied", applied=True)
        )
        await pool.execute(
            inbox_rows(
                2_000, name="user_busy", age_days=1, outcome="applied", applied=True, start=1
            )
        )
        await pool.execute("VACUUM ANALYZE webhook_inbox")
        fill_s = trio.current_time() - filled

        writer = InboxWriter(database_url, on_committed=lambda names: None)
        policy = RetentionPolicy()  # the service's defaults: 1,000 rows a batch, 50 ms apart
        phase = "before"
        latencies: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        lock_waits: list[int] = []
        failures: list[str] = []

        async def ingest(worker: int) -> None:
            n = 0
            while True:
                n += 1
                entry = InboxEntry(
                    uuid.uuid4().hex, f"user_live_{worker}", "messages.upsert", {"n": n}
                )
                started = trio.current_time()
                try:
                    await writer.submit(entry)
                except Exception as exc:
                    failures.append(repr(exc))
                latencies[phase].append(trio.current_time() - started)
                await trio.sleep(0.002)

        async def watch_locks() -> None:
            # Anyone waiting for a lock in this database (ingest waiting behind a delete).
            async with open_pool(database_url, min_size=1, max_size=1) as watcher:
                while True:
                    lock_waits.append(
                        await watcher.fetchval(
                            "SELECT count(*) FROM pg_locks l JOIN pg_database d"
                            " ON d.oid = l.database WHERE NOT l.granted"
                            " AND d.datname = current_database()"
                        )
                    )
                    await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for worker in range(4):
                nursery.start_soon(ingest, worker)
            nursery.start_soon(watch_locks)
            await trio.sleep(2)
            phase = "during"
            started = trio.current_time()
            results = await prune_all(pool, policy)
            prune_s = trio.current_time() - started
            phase = "after"
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

        settled = next(r for r in results if r.kind == "settled inbox rows")
        statements_s = settled.seconds - (settled.batches - 1) * policy.pause_s
        during_rate = len(latencies["during"]) / prune_s
        before_rate = len(latencies["before"]) / 2
        print(
            f"\nfilled {old + 2_000} inbox rows in {fill_s:.1f} s"
            f"\npruned {settled.rows} rows in {settled.batches} batches of <= 1000:"
            f" {settled.seconds:.2f} s ({settled.rows / settled.seconds:.0f} rows/s), of which"
            f" {statements_s:.2f} s in statements ({statements_s / settled.batches * 1000:.1f} ms"
            f" each) and the rest in the {policy.pause_s * 1000:.0f} ms pauses between them"
            f"\nwhole round (4 kinds): {prune_s:.2f} s"
            f"\ningest before: {_summary(latencies['before'])} ({before_rate:.0f}/s)"
            f"\ningest during: {_summary(latencies['during'])} ({during_rate:.0f}/s)"
            f"\ningest after:  {_summary(latencies['after'])}"
            f"\nlock waits seen in {len(lock_waits)} samples: {max(lock_waits, default=0)}"
        )
        assert settled.rows == old and settled.batches == old // 1000 + 1
        assert await count_rows(pool, "instance_name = 'user_busy'") == 2_000
        assert failures == []
        assert latencies["during"], "ingest stopped while pruning"
        assert max(lock_waits) == 0
        # Not blocked: the slowest webhook during pruning waited well under a second (one
        # blocked behind the whole prune would have waited its many seconds).
        assert max(latencies["during"]) < 1.0


# ---- the periodic task ------------------------------------------------------------------------


class FlakyPool:
    """A pool whose DELETEs fail as scripted, round after round."""

    def __init__(self, script: list[Callable[[], str]]) -> None:
        self.script = script
        self.calls = 0

    async def execute(self, statement: str, *args: Any) -> str:
        assert statement.startswith("DELETE FROM")
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return step()


def _raise(exc: Exception) -> Callable[[], str]:
    def fail() -> str:
        raise exc

    return fail


async def test_run_retention_never_dies(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auzap_actors.store.retention")
    kinds = len(RetentionPolicy().kinds())
    pool = FlakyPool(
        [_raise(OSError("connection refused"))] * kinds  # round 1: the database is away
        + [_raise(RuntimeError("a bug"))] * kinds  # round 2: a bug
        + [lambda: "DELETE 3"]  # round 3: works (3 < batch: one batch per kind)
    )
    policy = RetentionPolicy(interval_s=600, first_delay_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_retention, pool, policy)
        await trio.sleep(59)
        assert pool.calls == 0  # not before the first delay
        await trio.sleep(2 + 600 * 2)
        assert pool.calls == kinds * 3
        await trio.sleep(600)
        assert pool.calls == kinds * 4  # still going
        nursery.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == kinds and "connection refused" in warnings[0].getMessage()
    assert len(errors) == kinds and errors[0].exc_info is not None
    assert any("deleted 3 settled inbox rows" in r.getMessage() for r in caplog.records)


async def test_prune_all_reports_a_failing_kind_and_goes_on() -> None:
    pool = FlakyPool([_raise(OSError("gone")), lambda: "DELETE 0"])
    results = await prune_all(pool, RetentionPolicy())
    assert [r.error is not None for r in results] == [True] + [False] * (len(results) - 1)
    assert results[0] == Pruned("settled inbox rows", 0, 0, results[0].seconds, "OSError('gone')")


async def test_the_service_prunes_shortly_after_start(runner: ServiceRunner) -> None:
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(
            inbox_rows(50, name="user_old", age_days=8, outcome="applied", applied=True)
        )
        await pool.execute(
            inbox_rows(5, name="user_old", age_days=1, outcome="applied", applied=True, start=1)
        )
    # The first round comes after min(60 s, the interval).
    await runner.start(AUZAP_RETENTION_INTERVAL_S="1")

    async def pruned() -> bool:
        rows = await fetch_rows(runner.database_url, "SELECT count(*) AS n FROM webhook_inbox")
        return rows == [{"n": 5}]

    await eventually(pruned, timeout=10)


# ---- settings -----------------------------------------------------------------------------------


def test_settings(tmp_path: Path) -> None:
    base = make_settings("postgresql://x@/db", tmp_path)
    assert (base.inbox_retention_days, base.inbox_failed_retention_days) == (7, 30)
    assert base.retention_interval_s == 600
    policy = retention_policy(base)
    assert (policy.inbox_days, policy.failed_days, policy.interval_s) == (7, 30, 600)
    assert policy.first_delay_s == 60
    longer = make_settings("postgresql://x@/db", tmp_path, AUZAP_INBOX_RETENTION_DAYS="45")
    # Failed rows are never kept shorter than the others.
    assert (longer.inbox_retention_days, longer.inbox_failed_retention_days) == (45, 45)
    for env, words in (
        ({"AUZAP_INBOX_RETENTION_DAYS": "0"}, "between 1 and 3650"),
        ({"AUZAP_INBOX_RETENTION_DAYS": "a week"}, "whole number"),
        (
            {"AUZAP_INBOX_RETENTION_DAYS": "10", "AUZAP_INBOX_FAILED_RETENTION_DAYS": "9"},
            "AUZAP_INBOX_FAILED_RETENTION_DAYS must not be smaller",
        ),
        ({"AUZAP_RETENTION_INTERVAL_S": "0"}, "AUZAP_RETENTION_INTERVAL_S"),
    ):
        with pytest.raises(ConfigError, match=words):
            make_settings("postgresql://x@/db", tmp_path, **env)
    assert retention.DAY_S == 86400
