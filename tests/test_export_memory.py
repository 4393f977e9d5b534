"""Memory stays flat with the size of a backup: `auzap-actors export` and `import` of 20,000
messages peak at the same RSS as of 2,000 (tests/export_memory.py; the 10k/100k figures in
the README come from its manual run)."""

from __future__ import annotations

from pathlib import Path

import trio

from auzap_actors.store.db import open_pool

from .export_memory import measure, seed

SMALL, LARGE = 2_000, 20_000


async def test_export_and_import_memory_does_not_grow_with_the_backup(
    database_url: str, tmp_path: Path
) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        users = [await seed(pool, SMALL), await seed(pool, LARGE)]
    small, large = [
        await trio.to_thread.run_sync(measure, database_url, user, size, tmp_path)
        for user, size in zip(users, (SMALL, LARGE), strict=True)
    ]
    print(small, large, sep="\n")
    assert large.file_mib > 8 * small.file_mib  # ten times the data went through
    assert large.export_rss_mib < small.export_rss_mib + 8
    assert large.import_rss_mib < small.import_rss_mib + 8
