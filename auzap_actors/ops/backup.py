"""`auzap-actors export` and `auzap-actors import`: the export of GET /api/whatsapp/export
(store/export.py, the same lines and bytes) to a file or standard output, and its restore
(store/restore.py).  A file named `*.gz` is written gzip-compressed; a compressed file is
recognised on import by its first bytes."""

from __future__ import annotations

import gzip
import json
import sys
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

import trio

from ..config import ToolSettings
from ..core.naming import instance_name_for
from ..store import instances
from ..store.backups import write_export
from ..store.export import encode_line, export_lines
from ..store.legacy import auth_is_standalone
from ..store.restore import RestoreError, restore
from .db import tool_pool
from .progress import Progress

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class ExportOptions:
    user: str | None
    instance: str | None
    output: str | None  # None or "-": standard output


async def run_export(settings: ToolSettings, options: ExportOptions, out: TextIO) -> int:
    async with tool_pool(settings) as pool:
        name = await _instance_of(pool, options)
        if name is None:
            print("no instance for that user (or of that name)", file=sys.stderr)
            return 1
        exported_at = datetime.now(UTC)
        if options.output and options.output != "-":
            path = Path(options.output)
            with Progress("exporting lines", None) as progress:
                counts = await write_export(
                    pool,
                    name,
                    path,
                    exported_at,
                    compress=path.name.endswith(".gz"),
                    on_lines=progress.advance,
                )
        else:
            counts = await _to_stdout(pool, name, exported_at)
        print(
            f"exported {name}: {counts.get('contacts', 0)} contacts,"
            f" {counts.get('conversations', 0)} conversations,"
            f" {counts.get('messages', 0)} messages",
            file=out,
        )
    return 0


async def _instance_of(pool: Any, options: ExportOptions) -> str | None:
    if options.instance is not None:
        record = await instances.find_by_name(pool, options.instance)
    else:
        assert options.user is not None
        record = await instances.find_by_user(pool, uuid.UUID(options.user))
        if record is None:
            # A legacy row without user_id still has the user's name.
            record = await instances.find_by_name(pool, instance_name_for(options.user))
    return record.instance_name if record else None


async def _to_stdout(pool: Any, name: str, exported_at: datetime) -> dict[str, int]:
    target = sys.stdout.buffer
    counts: dict[str, int] = {}
    buffer = bytearray()
    async for line in export_lines(pool, name, exported_at):
        buffer += encode_line(line)
        if line["type"] == "end":
            counts = dict(line["counts"])
        if len(buffer) >= 256 * 1024:
            target.write(buffer)
            buffer.clear()
    target.write(buffer)
    target.flush()
    return counts


def _open(path: str) -> Any:
    if path == "-":
        return sys.stdin.buffer
    handle = open(path, "rb")
    if handle.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")
    return handle


async def _lines(handle: IO[bytes], progress: Progress) -> AsyncGenerator[tuple[int, Any], None]:
    """(line number, decoded line), read a batch of lines per worker-thread call."""
    number = 0
    while True:
        chunk = await trio.to_thread.run_sync(handle.readlines, 1024 * 1024)
        if not chunk:
            return
        for raw in chunk:
            number += 1
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RestoreError(f"line {number}: not JSON ({exc})") from None
            except RecursionError:
                raise RestoreError(f"line {number}: JSON nested too deep") from None
            yield number, line
            progress.advance()


async def run_import(settings: ToolSettings, path: str, out: TextIO, tty: bool | None) -> int:
    """Restore the export in `path` (checked to be a file by the caller, or "-")."""
    handle = _open(path)
    try:
        # A restore may go into an empty database: the schema is brought up to date first.
        async with tool_pool(settings, apply_migrations=True) as pool:
            standalone = await auth_is_standalone(pool)
            with Progress(
                "importing lines", None, stream=out if tty is not None else None, tty=tty
            ) as progress:
                try:
                    async with aclosing(_lines(handle, progress)) as lines:
                        result = await restore(pool, lines, create_users=standalone)
                except (RestoreError, OSError, EOFError) as exc:
                    print(f"import stopped: {exc} (rows before it are restored)", file=out)
                    return 1
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    print(
        f"imported into {result.instance}"
        f"{' (instance row created)' if result.created_instance else ''}:"
        f" contacts {result.contacts.inserted} new, {result.contacts.present} already there;"
        f" conversations {result.conversations.inserted} new,"
        f" {result.conversations.present} already there;"
        f" messages {result.messages.inserted} new, {result.messages.present} already there",
        file=out,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)
    return 0 if result.complete else 1
