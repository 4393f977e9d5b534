"""`auzap-actors instances check|update|migrate` (the seed's `migrate:whatsapp`), run as the real
command against a database seeded with legacy rows and a simulator holding stray instances,
beside a running service."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import trio

from auzap_actors.ops.progress import Progress

from .conftest import SIM_API_KEY, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, user_token
from .payloads import envelope, text_message


async def cli(database_url: str, sim_url: str, *args: str) -> tuple[int, str]:
    """Run `auzap-actors <args>` as its own process; (exit code, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.update(DATABASE_URL=database_url, EVOLUTION_API_URL=sim_url, EVOLUTION_API_KEY=SIM_API_KEY)
    done = await trio.run_process(
        [sys.executable, "-m", "auzap_actors", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode != 2, done.stderr.decode()  # could not run: say why
    return done.returncode, out


async def check_json(database_url: str, sim_url: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = await cli(database_url, sim_url, "instances", *args, "--json")
    return code, json.loads(out)


async def _state(database_url: str) -> list[Any]:
    """What the migration may change: the rows' owners and Evolution ids, and auth.users."""
    rows = await fetch_rows(
        database_url,
        "SELECT instance_name, user_id, evolution_instance_id FROM whatsapp_instances"
        " ORDER BY instance_name",
    )
    users = await fetch_rows(database_url, "SELECT id FROM auth.users ORDER BY id")
    return [rows, users]


async def _sim_create(sim: httpx.AsyncClient, name: str) -> None:
    answer = await sim.post(
        "/instance/create",
        json={"instanceName": name, "integration": "WHATSAPP-BAILEYS", "qrcode": False},
        headers={"apikey": SIM_API_KEY},
    )
    assert answer.status_code == 201, answer.text


async def _post_messages(client: httpx.AsyncClient, name: str, count: int) -> None:
    for _ in range(count):
        item = text_message(
            f"3EB0{uuid.uuid4().hex[:16].upper()}", "5511977770001@s.whatsapp.net", "oi"
        )
        answer = await client.post(
            "/api/webhook/whatsapp",
            json=envelope("messages.upsert", name, item),
            headers=WEBHOOK_HEADERS,
        )
        assert answer.status_code == 200, answer.text


async def test_migration_cli_finds_fixes_and_then_leaves_alone(
    runner: ServiceRunner, database_url: str
) -> None:
    legacy_user, mismatched, owned_twice = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stray, single, connected = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    fixable = f"user_{legacy_user}"
    await fetch_rows(
        database_url,
        "WITH u AS (INSERT INTO auth.users (id) VALUES ($2), ($3) RETURNING id)"
        " INSERT INTO whatsapp_instances (instance_name, user_id) VALUES"
        " ($1, NULL), ('whatsapp_legacy_1', NULL), ('legacy_acme', $2),"
        " ($4, $3) RETURNING id",
        fixable,
        uuid.uuid4(),  # legacy_acme's owner
        mismatched,
        f"user_{uuid.uuid4()}",  # a name of another user than its user_id
    )
    service = await runner.start()
    sim_url = await runner.simulator()
    async with http(service.url) as client, http(sim_url) as sim:
        # A user who connected through the service: in both places, nothing wrong.
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(connected)))
        assert answer.status_code == 200, answer.text
        for name in (f"user_{stray}", f"user_{single}", "foreign-bot", f"user_{owned_twice}"):
            await _sim_create(sim, name)
        # owned_twice already has an instance under a legacy name: one instance per user.
        await fetch_rows(
            database_url,
            "WITH u AS (INSERT INTO auth.users (id) VALUES ($1) RETURNING id)"
            " INSERT INTO whatsapp_instances (instance_name, user_id) SELECT 'old_name', id FROM u"
            " RETURNING id",
            owned_twice,
        )
        # Events for the stray instance and for a name nobody has: flagged as orphans.
        await _post_messages(client, f"user_{stray}", 3)
        await _post_messages(client, "ghost_instance", 2)

        async def flagged() -> bool:
            rows = await fetch_rows(
                database_url, "SELECT count(*) AS n FROM webhook_inbox WHERE outcome = 'orphan'"
            )
            return bool(rows[0]["n"] == 5)

        await eventually(flagged, timeout=10)

        # check: every problem with its count, non-zero.
        code, report = await check_json(database_url, sim_url, "check")
        assert code == 1, report
        counts = report["counts"]
        assert counts == {
            "no_user_id": 1,
            "no_user_id_bad_name": 1,
            "bad_name": 2,  # legacy_acme, old_name
            "name_user_mismatch": 1,
            "user_claimed_twice": 1,  # user_<owned_twice> in Evolution, the user has old_name
            "unknown_user": 0,
            "only_in_evolution": 2,  # stray, single
            "only_in_evolution_bad_name": 1,  # foreign-bot
            "only_here": 5,  # the four seeded rows and old_name: never created in Evolution
            "orphans_adoptable": 3,
            "orphans_owned": 0,
            "orphans_foreign": 0,
            "orphans_unknown": 2,
        }, counts
        code, text = await cli(database_url, sim_url, "instances", "check")
        print(text)
        assert code == 1
        assert "instances without user_id (name user_<uuid>)" in text and "ghost_instance" in text
        table = {line[:52].strip(): line[52:].split() for line in text.splitlines()[2:15]}
        assert table["orphan webhook events (instance update adopts)"][0] == "3"
        assert table["in Evolution, not in our table (other names)"][0] == "1"

        # migrate one instance: dry run, then for real.
        before = await _state(database_url)
        code, text = await cli(
            database_url, sim_url, "instances", "migrate", f"user_{single}", "--dry-run"
        )
        assert code == 0 and f"would adopt user_{single}" in text, text
        assert await _state(database_url) == before
        code, text = await cli(database_url, sim_url, "instances", "migrate", f"user_{single}")
        assert code == 0 and "1 instance(s) adopted" in text, text
        code, text = await cli(database_url, sim_url, "instances", "migrate", "no_such_thing")
        assert code == 1 and "no instance named" in text

        # update --dry-run prints the plan and changes nothing.
        before = await _state(database_url)
        code, text = await cli(database_url, sim_url, "instances", "update", "--dry-run")
        assert code == 3, text
        assert f"would set user_id of {fixable} to {legacy_user}" in text
        assert f"would adopt user_{stray}" in text
        assert await _state(database_url) == before

        # update fixes what it can; what needs a human is left and named.
        code, text = await cli(database_url, sim_url, "instances", "update")
        print(text)
        assert code == 3, text
        assert "1 user_id(s) filled, 1 instance(s) adopted" in text, text
        rows = {
            r["instance_name"]: r
            for r in await fetch_rows(
                database_url,
                "SELECT instance_name, user_id, evolution_instance_id, status"
                " FROM whatsapp_instances",
            )
        }
        assert rows[fixable]["user_id"] == legacy_user
        assert rows[f"user_{stray}"]["user_id"] == stray
        assert rows[f"user_{stray}"]["evolution_instance_id"]
        users = {r["id"] for r in await fetch_rows(database_url, "SELECT id FROM auth.users")}
        assert {legacy_user, stray, single} <= users  # standalone auth.users: created

        # A second update changes nothing, and says so.
        after = await _state(database_url)
        code, text = await cli(database_url, sim_url, "instances", "update")
        assert code == 3 and "nothing to change" in text, text
        assert await _state(database_url) == after

        # check again: only what needs a human (exit 3), the adopted orphans are now owned.
        code, report = await check_json(database_url, sim_url, "check")
        assert code == 3
        counts = report["counts"]
        assert counts["no_user_id"] == counts["only_in_evolution"] == 0
        assert counts["orphans_adoptable"] == 0 and counts["orphans_owned"] == 3
        assert {(p["kind"], p["name"]) for p in report["needs_human"]} == {
            ("no_user_id_bad_name", "whatsapp_legacy_1"),
            ("bad_name", "legacy_acme"),
            ("bad_name", "old_name"),
            ("name_user_mismatch", next(n for n in rows if rows[n]["user_id"] == mismatched)),
            ("user_claimed_twice", f"user_{owned_twice}"),
            ("only_in_evolution_bad_name", "foreign-bot"),
        }

        # The adopted instance's next event starts its actor, which applies the orphans too.
        await _post_messages(client, f"user_{stray}", 1)

        async def applied() -> bool:
            rows = await fetch_rows(
                database_url,
                "SELECT count(*) AS n FROM messages WHERE instance_name = $1",
                f"user_{stray}",
            )
            return bool(rows[0]["n"] == 4)

        await eventually(applied, timeout=15)


def test_instances_commands_need_evolution() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "auzap_actors", "instances", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "EVOLUTION_API_URL" in result.stderr, result.stderr


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    plain = io.StringIO()
    with Progress("updating", 100, stream=plain, tty=False) as progress:
        for _ in range(100):
            progress.advance()
    lines = plain.getvalue().splitlines()
    assert lines[0] == "updating: 10/100 (10%)" and lines[-1] == "updating: 100/100 (100%)"
    assert len(lines) == 10
    counted = io.StringIO()
    with Progress("exporting lines", None, stream=counted, tty=False) as progress:
        for _ in range(5):
            progress.advance(4_000)  # every 10,000 lines crossed gives a line
    assert counted.getvalue().splitlines() == ["exporting lines: 12,000", "exporting lines: 20,000"]
    terminal = io.StringIO()
    with Progress("updating", 4, stream=terminal, tty=True) as progress:
        for _ in range(4):
            progress.advance()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\n") and "4/4 (100%)" in drawn


async def test_an_unreachable_evolution_is_one_line_and_exit_2(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.update(
        DATABASE_URL=database_url,
        EVOLUTION_API_URL="http://127.0.0.1:9",  # discard: nothing listens
        EVOLUTION_API_KEY=SIM_API_KEY,
    )
    done = await trio.run_process(
        [sys.executable, "-m", "auzap_actors", "instances", "check"],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 2 and "Evolution API could not be read" in out, out
    assert SIM_API_KEY not in out + done.stderr.decode()


async def test_in_supabase_a_user_is_never_made_up(
    runner: ServiceRunner, database_url: str
) -> None:
    """Where auth.users is not the standalone table, a name whose user auth.users lacks needs
    a human; a known user's instance is still fixed."""
    known, unknown = uuid.uuid4(), uuid.uuid4()
    await fetch_rows(
        database_url,
        "INSERT INTO auth.users (id) VALUES ($1) RETURNING id",
        known,
    )
    await fetch_rows(
        database_url,
        "INSERT INTO whatsapp_instances (instance_name) VALUES ($1), ($2) RETURNING id",
        f"user_{known}",
        f"user_{unknown}",
    )
    await fetch_rows(database_url, "COMMENT ON TABLE auth.users IS NULL")
    sim_url = await runner.simulator()
    code, report = await check_json(database_url, sim_url, "update")
    assert code == 3, report
    assert report["filled"] == 1 and report["counts"]["unknown_user"] == 1
    users = {r["id"] for r in await fetch_rows(database_url, "SELECT id FROM auth.users")}
    assert users == {known}
