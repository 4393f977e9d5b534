"""The user's backup (`store/export.py`'s lines) as the web streams it.

The header and the first line read from the database are read before anything is sent, so a
database that is away at the start is a 503, not an empty file; a database lost later ends the
stream early, without its `end` line (the reader sees the file is incomplete).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from ..store.export import export_lines
from ..store.faults import is_transient
from .selection import database

log = logging.getLogger(__name__)


async def open_export(
    pool: Any, name: str, exported_at: datetime
) -> AsyncGenerator[dict[str, Any], None]:
    """The export of instance `name`, its first lines read already: DatabaseUnavailable when
    the database is away before the first line.  The caller must exhaust or `aclose()` what
    this returns."""
    lines = export_lines(pool, name, exported_at)
    ahead: list[dict[str, Any]] = []
    try:
        async with database():
            # The header, and the first line read from the database (or the end line).
            ahead.append(await anext(lines))
            ahead.append(await anext(lines))
    except BaseException:
        await lines.aclose()
        raise
    return _export_stream(ahead, lines)


async def _export_stream(
    ahead: list[dict[str, Any]], lines: AsyncGenerator[dict[str, Any], None]
) -> AsyncGenerator[dict[str, Any], None]:
    try:
        for line in ahead:
            yield line
        try:
            async for line in lines:
                yield line
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("export ended early, the database is away: %r", exc)
    finally:
        await lines.aclose()
