"""Backups: `auzap-actors export` writes the same NDJSON as GET /api/whatsapp/export;
`auzap-actors import` restores it idempotently (export -> wipe -> import gives the same export,
ids included; a second import changes nothing); the scheduled backups write every instance's
export, gzip-compressed and atomically, keep the newest N, and survive a failing round."""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio

from auzap_actors.config import BackupRetention, load_settings
from auzap_actors.store.backups import SUFFIX, TEMP_PREFIX, BackupPolicy, prune_files, safe_part

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    store_messages,
    user_token,
)
from .payloads import envelope, text_message

CHATS = ("5511933330001@s.whatsapp.net", "5511933330002@s.whatsapp.net")
PER_CHAT = 300  # 600 messages: more than one restore batch (500) and one export page


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env["DATABASE_URL"] = database_url
    done = await trio.run_process(
        [sys.executable, "-m", "auzap_actors", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode().splitlines()]


def _without_time(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**line, "exported_at": None} if line["type"] == "export" else line for line in lines]


async def _counts(database_url: str, name: str) -> dict[str, int]:
    counts = {}
    for table in ("contacts", "conversations", "messages", "jid_aliases"):
        rows = await fetch_rows(
            database_url, f"SELECT count(*) AS n FROM {table} WHERE instance_name = $1", name
        )
        counts[table] = rows[0]["n"]
    return counts


async def _api_views(client: httpx.AsyncClient, token: str) -> list[Any]:
    """The user's conversations and each one's messages, as the API shows them."""
    answer = await client.get("/api/whatsapp/conversations?limit=200", headers=auth(token))
    assert answer.status_code == 200, answer.text
    views: list[Any] = [answer.json()["conversations"]]
    for conversation in views[0]:
        messages = await client.get(
            f"/api/whatsapp/conversations/{conversation['id']}/messages?limit=200",
            headers=auth(token),
        )
        views.append(messages.json()["messages"])
    return views


async def test_export_wipe_import_gives_the_same_backup(
    runner: ServiceRunner, database_url: str, tmp_path: Path
) -> None:
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    service = await runner.start()
    async with http(service.url, timeout=60) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert answer.status_code == 200, answer.text
        await store_messages(client, database_url, name, CHATS, PER_CHAT)
        # A contact that names both its phone jid and its @lid.
        await fetch_rows(
            database_url,
            "UPDATE contacts SET lid = '99887766@lid' WHERE instance_name = $1 AND jid = $2"
            " RETURNING id",
            name,
            CHATS[0],
        )
        async with client.stream("GET", "/api/whatsapp/export", headers=auth(token)) as stream:
            api_bytes = b"".join([chunk async for chunk in stream.aiter_bytes()])
        views_before = await _api_views(client, token)
    await runner.stop()

    first = tmp_path / "first.ndjson"
    code, out, err = await cli(database_url, "export", "--user", str(user), "--output", str(first))
    assert code == 0, err
    assert "600 messages" in out
    exported = _lines(first)
    api_lines = [json.loads(line) for line in api_bytes.decode().splitlines()]
    assert _without_time(exported) == _without_time(api_lines)  # the same NDJSON as the API
    assert len(exported) == 1 + exported[-1]["counts"]["contacts"] + 2 + 600 + 1

    before = await _counts(database_url, name)
    assert before["jid_aliases"] == 0  # the lid was set by hand above: no alias row yet
    for table in ("messages", "conversations", "contacts", "whatsapp_instances"):
        await fetch_rows(database_url, f"DELETE FROM {table} RETURNING 1")
    assert (await _counts(database_url, name))["messages"] == 0

    code, out, err = await cli(database_url, "import", str(first))
    assert code == 0, out + err
    assert "(instance row created)" in out and "messages 600 new, 0 already there" in out, out
    restored = await _counts(database_url, name)
    assert restored == {**before, "jid_aliases": 1}
    owner = await fetch_rows(
        database_url, "SELECT user_id FROM whatsapp_instances WHERE instance_name = $1", name
    )
    assert owner == [{"user_id": user}]

    # The restored database exports the same lines (ids included), compressed this time.
    second = tmp_path / "second.ndjson.gz"
    code, _out, err = await cli(database_url, "export", "--user", str(user), "-o", str(second))
    assert code == 0, err
    assert second.read_bytes()[:2] == b"\x1f\x8b"
    assert second.stat().st_mode & 0o777 == 0o600  # people's conversations: owner only
    assert _without_time(_lines(second)) == _without_time(exported)

    # Importing again (the gzip file this time) changes nothing.
    code, out, err = await cli(database_url, "import", str(second))
    assert code == 0, out + err
    assert "messages 0 new, 600 already there" in out and "created" not in out, out
    assert await _counts(database_url, name) == restored

    # The API shows the same conversations and messages as before the wipe.
    service = await runner.start()
    async with http(service.url, timeout=60) as client:
        assert await _api_views(client, token) == views_before
        # A new contact still gets a fresh id after the restored ones (the sequence moved on).
        item = text_message("3EB0NEWCONTACT0001", "5511944440009@s.whatsapp.net", "nova")
        answer = await client.post(
            "/api/webhook/whatsapp",
            json=envelope("messages.upsert", name, item),
            headers=WEBHOOK_HEADERS,
        )
        assert answer.status_code == 200, answer.text

        async def stored() -> bool:
            return (await _counts(database_url, name))["messages"] == 601

        await eventually(stored, timeout=10)
        failed = await fetch_rows(
            database_url, "SELECT id FROM webhook_inbox WHERE outcome = 'error'"
        )
        assert failed == []


async def test_import_refuses_what_is_not_an_export(database_url: str, tmp_path: Path) -> None:
    code, _out, err = await cli(database_url, "export", "--user", str(uuid.uuid4()))
    assert code == 1 and "no instance" in err
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"type": "message", "data": {}}\n')
    code, out, _err = await cli(database_url, "import", str(bad))
    assert code == 1 and "does not start with an export header" in out
    truncated = tmp_path / "truncated.ndjson"
    name = f"user_{uuid.uuid4()}"
    header = {"type": "export", "version": 1, "instance_name": name, "exported_at": None}
    truncated.write_text(json.dumps(header) + "\n")
    code, out, _err = await cli(database_url, "import", str(truncated))
    assert code == 1 and "no end line" in out, out  # incomplete: said, and not a success
    deep = tmp_path / "deep.ndjson"  # a line nested deeper than Python's parser follows
    deep.write_text(json.dumps(header) + "\n" + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = await cli(database_url, "import", str(deep))
    assert code == 1 and "line 2: JSON nested too deep" in out, (out, err)
    assert "Traceback" not in out + err


async def test_scheduled_backups_rotate_and_survive_a_failing_round(
    runner: ServiceRunner, database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    org = uuid.uuid4()
    # Instances without an organization are written under no-organization/: a file there
    # makes their rounds fail until it is gone.
    (directory / "no-organization").write_text("in the way")
    service = await runner.start(
        AUZAP_BACKUP_DIR=str(directory),
        AUZAP_BACKUP_INTERVAL_S="1",
        AUZAP_BACKUP_RETENTION="2",
    )
    users = [uuid.uuid4(), uuid.uuid4()]
    async with http(service.url, timeout=60) as client:
        for user, organization in zip(users, (org, None), strict=True):
            answer = await client.post(
                "/api/whatsapp/connect", headers=auth(user_token(user, organization))
            )
            assert answer.status_code == 200, answer.text
        await store_messages(client, database_url, f"user_{users[0]}", CHATS[:1], 5)

    with_org = directory / str(org) / f"user_{users[0]}"

    def backups(folder: Path) -> list[Path]:
        return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []

    await eventually(lambda: len(backups(with_org)) == 2, timeout=20, interval=0.2)
    (directory / "no-organization").unlink()  # the failing instance's next round succeeds
    without_org = directory / "no-organization" / f"user_{users[1]}"
    await eventually(lambda: len(backups(without_org)) == 2, timeout=20, interval=0.2)
    await trio.sleep(2.5)  # more rounds: still the newest two, no temporary file left
    assert len(backups(with_org)) == 2 and len(backups(without_org)) == 2
    assert not list(directory.rglob(f"{TEMP_PREFIX}*"))
    lines = _lines(backups(with_org)[-1])
    assert lines[0]["instance_name"] == f"user_{users[0]}"
    assert lines[-1] == {
        "type": "end",
        "counts": {"contacts": 1, "conversations": 1, "messages": 5},
    }
    # The service is still serving.
    async with http(service.url) as client:
        assert (await client.get("/healthz")).status_code == 200


def test_backup_retention_by_days_and_odd_names(tmp_path: Path) -> None:
    policy = BackupPolicy(tmp_path, keep=None, days=2)
    now = time.time()
    for age_days in (0.5, 1, 3, 5):
        path = tmp_path / f"{10 - age_days:05.1f}{SUFFIX}"  # older sorts first
        path.write_bytes(b"")
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    assert prune_files(tmp_path, policy, now) == 2
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2
    assert safe_part("user_0b0e") == "user_0b0e"
    odd = safe_part("../../etc")
    assert "/" not in odd and not odd.startswith(".") and odd != safe_part("../../etd")
    settings = load_settings(
        {"AUZAP_DEMO": "1", "AUZAP_BACKUP_DIR": "b", "AUZAP_BACKUP_RETENTION": "30d"}
    )
    assert settings.backup_retention == BackupRetention(days=30)
