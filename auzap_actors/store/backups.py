"""Backup files: one instance's export (store/export.py) written to a file atomically, and the
scheduled backups of every instance (a task of the launcher's root nursery, like retention).

A file is written under a temporary name in its final directory, flushed to disk, then renamed:
a reader (or a restore) never sees half a backup, and a crash leaves only a temporary file,
removed by a later round.  Writes happen in a worker thread a few hundred KiB at a time, so the
event loop (and the service's latency) does not wait for the disk or for gzip.

Layout: `<dir>/<organization_id or "no-organization">/<instance>/<UTC time>.ndjson.gz`.  Names
that are not safe as a path (a legacy name with `/` or `..`) are spelled with `_` and a short
hash of the real name.  Retention per instance: the newest N files, or those younger than N
days (the newest always stays).  With several nodes, a round takes a PostgreSQL advisory lock:
one node at a time backs everything up; the others skip that round.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import trio

from .export import encode_line, export_lines
from .faults import is_transient

log = logging.getLogger(__name__)

SUFFIX = ".ndjson.gz"
TEMP_PREFIX = ".tmp-"
CHUNK_BYTES = 256 * 1024  # handed to the writer thread at a time
_LOCK_ID = 0x6175_7A62  # "auzb": one node backs up at a time
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}$")


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    directory: Path
    interval_s: float = 86400.0
    keep: int | None = 7  # newest files per instance kept
    days: float | None = None  # or: files younger than this kept
    first_delay_s: float = 60.0


@dataclass(slots=True)
class BackupRound:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deleted: int = 0
    skipped: bool = False  # another node held the round's lock


def safe_part(name: str) -> str:
    """`name` as one path component: itself when harmless, else a sanitized spelling with a
    hash (two different names never share a directory)."""
    if _SAFE.match(name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".")[:100] or "_"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


async def write_export(
    pool: Any,
    instance: str,
    path: Path,
    exported_at: datetime,
    *,
    compress: bool,
    on_lines: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write the instance's export to `path` atomically (temporary file, fsync, rename);
    returns the counts of its end line.  Raises (leaving no file at `path`) when the export
    fails midway.  `on_lines(n)` hears of every n lines handed to the disk (a progress bar)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{path.name}"
    raw: IO[bytes] = await trio.to_thread.run_sync(_create_private, temp)
    stream: IO[bytes] = raw
    if compress:
        stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)  # type: ignore[assignment]
    counts: dict[str, int] = {}
    try:
        buffer = bytearray()
        pending = 0  # lines in the buffer
        lines = export_lines(pool, instance, exported_at)
        async for line in lines:
            buffer += encode_line(line)
            pending += 1
            if line["type"] == "end":
                counts = dict(line["counts"])
            if len(buffer) >= CHUNK_BYTES:
                chunk, buffer = bytes(buffer), bytearray()
                await trio.to_thread.run_sync(stream.write, chunk)
                if on_lines is not None:
                    on_lines(pending)
                pending = 0
        await trio.to_thread.run_sync(_finish, stream, raw, bytes(buffer))
        if on_lines is not None:
            on_lines(pending)
        await trio.to_thread.run_sync(os.replace, temp, path)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_discard, stream, raw, temp)
        raise
    return counts


def _create_private(path: Path) -> IO[bytes]:
    """A new file only its owner may read: backups hold people's conversations."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _finish(stream: IO[bytes], raw: IO[bytes], tail: bytes) -> None:
    stream.write(tail)
    if stream is not raw:
        stream.close()  # the gzip trailer; the file itself stays open
    raw.flush()
    os.fsync(raw.fileno())
    raw.close()


def _discard(stream: IO[bytes], raw: IO[bytes], temp: Path) -> None:
    for handle in (stream, raw):
        try:
            handle.close()
        except Exception:
            pass
    temp.unlink(missing_ok=True)


def backup_path(policy: BackupPolicy, row: Any, when: datetime) -> Path:
    org = str(row["organization_id"]) if row["organization_id"] else "no-organization"
    return policy.directory / org / safe_part(row["instance_name"]) / f"{_stamp(when)}{SUFFIX}"


def prune_files(folder: Path, policy: BackupPolicy, now: float) -> int:
    """Apply retention to one instance's folder (and drop temporaries older than an
    interval: a crashed write's); returns the files deleted.  Blocking: run in a thread."""
    deleted = 0
    files = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
    old = files[:-1]  # the newest always stays
    if policy.keep is not None:
        doomed = files[: max(0, len(files) - policy.keep)]
    elif policy.days is not None:
        doomed = [p for p in old if now - p.stat().st_mtime > policy.days * 86400]
    else:
        doomed = []
    for path in doomed:
        path.unlink(missing_ok=True)
        deleted += 1
    for temp in folder.glob(f"{TEMP_PREFIX}*"):
        if now - temp.stat().st_mtime > max(policy.interval_s, 3600):
            temp.unlink(missing_ok=True)
    return deleted


async def backup_all(pool: Any, policy: BackupPolicy, now: float) -> BackupRound:
    """One round: every instance, one after the other.  An instance that fails is logged
    and the round goes on; nothing but cancellation escapes."""
    result = BackupRound()
    async with pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
            result.skipped = True
            return result
        try:
            await _round(pool, policy, now, result)
        finally:
            with trio.CancelScope(shield=True):
                await lock_conn.fetchval("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return result


async def _round(pool: Any, policy: BackupPolicy, now: float, result: BackupRound) -> None:
    after = ""
    while True:
        rows = await pool.fetch(
            "SELECT instance_name, organization_id FROM whatsapp_instances"
            " WHERE instance_name > $1 ORDER BY instance_name LIMIT 500",
            after,
        )
        for row in rows:
            name = row["instance_name"]
            when = datetime.now(UTC)
            path = backup_path(policy, row, when)
            try:
                await write_export(pool, name, path, when, compress=True)
                result.written.append(path)
                result.deleted += await trio.to_thread.run_sync(
                    prune_files, path.parent, policy, now
                )
            except Exception as exc:
                result.failed.append((name, repr(exc)))
                if is_transient(exc):
                    log.warning("backup of %s failed, retried next round: %r", name, exc)
                else:
                    log.error("backup of %s failed; retried next round", name, exc_info=exc)
        if len(rows) < 500:
            return
        after = rows[-1]["instance_name"]


async def run_backups(
    pool: Any,
    policy: BackupPolicy,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A round `first_delay_s` after start, then `interval_s` after the end of each, until
    cancelled.  Never dies: a failed round (the database away, a full disk) is logged and the
    next round tries again."""
    task_status.started()
    await trio.sleep(policy.first_delay_s)
    while True:
        started = time.monotonic()
        try:
            done = await backup_all(pool, policy, time.time())
            if done.skipped:
                log.info("backups: another node is taking this round")
            else:
                log.info(
                    "backups: %d written, %d failed, %d old deleted in %.1f s to %s",
                    len(done.written),
                    len(done.failed),
                    done.deleted,
                    time.monotonic() - started,
                    policy.directory,
                )
        except Exception as exc:
            if is_transient(exc):
                log.warning("backups: round failed, retried next round: %r", exc)
            else:
                log.exception("backups: round failed; retried next round")
        await trio.sleep(policy.interval_s)
