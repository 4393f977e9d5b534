"""Orphans (events for a name that never became an instance) are flagged once per row: a
foreign instance that keeps sending costs one indexed UPDATE of its new rows per doorbell, not
a rescan of all its rows (quadratic).  Run with `-s` for the figures."""

from __future__ import annotations

import trio

from auzap_actors.store.db import open_pool
from auzap_actors.store.inbox import OrphanMarks, mark_orphans

from .test_retention import count_rows, inbox_rows


async def test_orphans_are_flagged_once_per_row(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        await pool.execute(
            inbox_rows(20_000, name="user_foreign", age_days=0, outcome=None, applied=False)
        )
        marks = OrphanMarks(capacity=2)
        assert await marks.mark(pool, "user_foreign") == 20_000
        # A foreign instance that keeps sending: each doorbell flags only its new rows.
        remembered_s = 0.0
        for n in range(100):
            await pool.execute(
                inbox_rows(
                    1, name="user_foreign", age_days=0, outcome=None, applied=False, start=n + 1
                )
            )
            started = trio.current_time()
            assert await marks.mark(pool, "user_foreign") == 1
            remembered_s += trio.current_time() - started
        # What every doorbell cost before: the UPDATE rescans all the name's pending rows.
        started = trio.current_time()
        for _ in range(100):
            assert await mark_orphans(pool, "user_foreign") == (0, 0)
        rescan_s = trio.current_time() - started
        print(
            f"\n100 doorbells after 20k rows: {remembered_s * 10:.2f} ms each remembering how far"
            f" it got, {rescan_s * 10:.2f} ms each rescanning"
        )
        assert await count_rows(pool, "outcome = 'orphan'") == 20_100
        # Bounded: the least recently flagged name is forgotten, and rescanned once if it comes
        # back (nothing left to flag).
        await pool.execute(inbox_rows(1, name="user_b", age_days=0, outcome=None, applied=False))
        await pool.execute(inbox_rows(1, name="user_c", age_days=0, outcome=None, applied=False))
        assert await marks.mark(pool, "user_b") == 1
        assert await marks.mark(pool, "user_c") == 1
        assert len(marks) == 2 and repr(marks) == "<OrphanMarks names=2/2>"
        assert await marks.mark(pool, "user_foreign") == 0
