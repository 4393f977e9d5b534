"""The operators' statements stay bounded however big the inbox grows: the inbox lag of
/metrics is one probe of its partial index, and an instance's backlog reads only that
instance's pending rows.  The statements are the code's own constants; 200k settled rows,
20k orphans and a few pending rows of 500 instances are in the table."""

from __future__ import annotations

from auzap_actors.store import operators
from auzap_actors.store.db import open_pool

from .plans import custom_plan, generic_plan, plan_nodes

FILL = [
    """INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload, applied_at, outcome,
      received_at)
    SELECT 'settled-' || g, 'user_other_' || (g % 500), 'messages.upsert', '{}'::jsonb,
      now() - (g % 1000) * interval '1 second', 'applied', now() - interval '1 hour'
    FROM generate_series(1, 200000) AS g""",
    """INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload, outcome, received_at)
    SELECT 'orphan-' || g, 'stranger_' || (g % 50), 'messages.upsert', '{}'::jsonb, 'orphan',
      now() - interval '2 days'
    FROM generate_series(1, 20000) AS g""",
    """INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload, received_at)
    SELECT 'pending-' || g, 'user_other_' || g, 'messages.upsert', '{}'::jsonb,
      now() - interval '90 seconds'
    FROM generate_series(1, 5) AS g""",
    "ANALYZE webhook_inbox",
]


async def test_inbox_lag_and_backlog_read_only_what_they_report(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        for statement in FILL:
            await pool.execute(statement)
        async with pool.acquire() as conn:
            for sql, args, index in (
                (operators.LAG_SQL, (), "idx_webhook_inbox_unapplied"),
                (
                    operators.BACKLOG_SQL,
                    ("user_other_3", operators.BACKLOG_COUNT_CAP),
                    "idx_webhook_inbox_pending",
                ),
            ):
                plans = [await custom_plan(conn, sql, args)]
                if args:  # without parameters the one plan is the generic one
                    plans.append(await generic_plan(conn, sql, args))
                for plan in plans:
                    nodes = plan_nodes(plan)
                    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
                    assert index in {n.get("Index Name") for n in nodes}, nodes
        # The answers: the oldest pending row is 90 s old (orphans, older, are left out).
        lag = await operators.inbox_lag_s(pool)
        assert 89 < lag < 120
        backlog = await operators.inbox_backlog(pool, "user_other_3")
        assert backlog["pending"] == 1 and 89 < backlog["oldest_pending_age_s"] < 120
        assert (await operators.inbox_backlog(pool, "user_other_6"))["pending"] == 0
        assert await operators.failed_rows_of(pool, "user_other_3") == {"count": 0, "latest": []}
