"""Several instances per user (AUZAP_MAX_INSTANCES_PER_USER above 1).

Migration 0011 leaves a 1:1 database as it was (indexes and rows); the operator step
(`migrate --multi-instance`) is refused at the default, idempotent above it, and the service
refuses to start above 1 until it ran.  Then one user's instances connect and scan apart, each
its own actor; messages land in the instance they came to; `?instance=` selects among the
caller's own instances only; a new label beyond the limit is a 409; frames name their
instance.  With the default, a selector only ever selects and the body of a connect is unread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from auzap_actors.config import ConfigError
from auzap_actors.core.legacy import Kind, Remote, Row, review
from auzap_actors.store.db import open_pool
from auzap_actors.store.migrate import migrate
from auzap_actors.store.multi import (
    LABEL_UNIQUE_INDEX,
    USER_UNIQUE_INDEX,
    enable_multi_instance,
    multi_instance_ready,
)

from .conftest import ADMIN_TOKEN, ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    next_frame,
    sim_post_ok,
    user_token,
    wait_frame,
)
from .payloads import envelope
from .test_openapi import _fuzz

API = "/api/whatsapp"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

_INDEXES = (
    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'whatsapp_instances'"
    " ORDER BY indexname"
)
# The seed's columns (CONTRACT §9) and the service's, as they were before migration 0011.
_ROWS = "SELECT * FROM whatsapp_instances ORDER BY instance_name"


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def test_migration_0011_leaves_a_one_to_one_database_untouched(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        # The database as migration 0010 left it, with users and their one instance each.
        await pool.execute("ALTER TABLE whatsapp_instances DROP COLUMN instance_label")
        await pool.execute("DELETE FROM schema_migrations WHERE version = 11")
        users = [uuid.uuid4() for _ in range(3)]
        for n, user in enumerate(users):
            await pool.execute("INSERT INTO auth.users (id) VALUES ($1)", user)
            await pool.execute(
                "INSERT INTO whatsapp_instances (instance_name, user_id, status, phone_number)"
                " VALUES ($1, $2, 'open', $3)",
                f"user_{user}",
                user,
                f"55119000000{n}",
            )
        indexes_before = [dict(r.items()) for r in await pool.fetch(_INDEXES)]
        rows_before = [dict(r.items()) for r in await pool.fetch(_ROWS)]
        assert {i["indexname"] for i in indexes_before} >= {USER_UNIQUE_INDEX}

        applied = await migrate(pool)

        assert [(m.version, m.name) for m in applied] == [(11, "instance_label")]
        assert [dict(r.items()) for r in await pool.fetch(_INDEXES)] == indexes_before
        rows_after = [dict(r.items()) for r in await pool.fetch(_ROWS)]
        assert [r.pop("instance_label") for r in rows_after] == [None] * 3
        assert rows_after == rows_before
        # Still one instance per user: the seed's unique index refuses a second row.
        assert not await multi_instance_ready(pool)
        with pytest.raises(Exception, match=USER_UNIQUE_INDEX):
            await pool.execute(
                "INSERT INTO whatsapp_instances (instance_name, user_id) VALUES ($1, $2)",
                f"user_{users[0]}_2",
                users[0],
            )


def _cli_migrate(database_url: str, tmp_path: Path, max_instances: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "AUZAP_DATA_DIR": str(tmp_path / "cli"),
            "AUZAP_MAX_INSTANCES_PER_USER": max_instances,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "auzap_actors", "migrate", "--multi-instance"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_operator_step_is_explicit_refused_at_one_and_idempotent(
    runner: ServiceRunner, database_url: str, tmp_path: Path
) -> None:
    async def index_names() -> set[str]:
        return {r["indexname"] for r in await fetch_rows(database_url, _INDEXES)}

    refused = await trio.to_thread.run_sync(_cli_migrate, database_url, tmp_path, "1")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "auzap-actors: configuration error: --multi-instance drops the seed's"
        " one-instance-per-user index: set AUZAP_MAX_INSTANCES_PER_USER above 1 to ask for it"
    ]
    assert USER_UNIQUE_INDEX in await index_names()

    # The service refuses more than one instance per user while the index is there.
    with pytest.raises(BaseException) as started:
        await runner.start(AUZAP_MAX_INSTANCES_PER_USER="3")
    cause = _unwrap(started.value)
    assert isinstance(cause, ConfigError)
    assert "auzap-actors migrate --multi-instance" in str(cause)

    first = await trio.to_thread.run_sync(_cli_migrate, database_url, tmp_path, "3")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "migrations applied: none",
        f"multi-instance schema: dropped {USER_UNIQUE_INDEX}, created {LABEL_UNIQUE_INDEX}",
    ]
    again = await trio.to_thread.run_sync(_cli_migrate, database_url, tmp_path, "3")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "multi-instance schema: already in place"
    names = await index_names()
    assert USER_UNIQUE_INDEX not in names and LABEL_UNIQUE_INDEX in names
    # Starts now; the other indexes of the seed are still there.
    assert {"idx_whatsapp_instances_user_id", "idx_whatsapp_instances_instance_name"} <= names
    service = await runner.start(AUZAP_MAX_INSTANCES_PER_USER="3")
    async with http(service.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def _scan(sim_url: str, name: str, phone: str) -> None:
    async with http(sim_url) as sim:
        await sim_post_ok(sim, f"/_sim/instances/{name}/scan", {"phone": phone})


async def test_several_instances_of_one_user(runner: ServiceRunner, database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        await enable_multi_instance(pool)
    service = await runner.start(AUZAP_MAX_INSTANCES_PER_USER="3")
    sim_url = service.simulator_url or ""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    alice_token, bob_token = user_token(alice), user_token(bob)
    primary, second, third = f"user_{alice}", f"user_{alice}_2", f"user_{alice}_3"
    ws_url = service.url.replace("http://", "ws://") + f"/ws?token={alice_token}"
    async with http(service.url) as client, open_websocket_url(ws_url) as ws:
        assert (await next_frame(ws)) == {"type": "snapshot", "data": None}
        assert (await next_frame(ws)) == {"type": "instances", "data": []}

        async def connect(token: str, **kwargs: Any) -> Any:
            return await client.post(f"{API}/connect", headers=auth(token), **kwargs)

        plain = await connect(alice_token)
        assert plain.status_code == 200, plain.text
        assert plain.json()["instance"]["instance_name"] == primary
        # Concurrent connects of one new label make one instance.
        answers: list[Any] = []
        async with trio.open_nursery() as nursery:
            for _ in range(4):

                async def one() -> None:
                    answers.append(await connect(alice_token, json={"label": "sales"}))

                nursery.start_soon(one)
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["instance"]["instance_name"] for a in answers} == {second}

        # Each instance scans its own QR, as its own actor.
        qr_names = set()
        while qr_names != {primary, second}:
            frame = await wait_frame(ws, lambda f: f["type"] == "qrcode")
            assert frame["data"]["instance_name"] == frame["data"]["instanceName"]
            qr_names.add(frame["data"]["instance_name"])
        await _scan(sim_url, second, "5511900000002")

        async def view(selector: str, token: str = alice_token) -> Any:
            return await client.get(
                f"{API}/instance", params={"instance": selector}, headers=auth(token)
            )

        async def is_open(selector: str) -> bool:
            return bool((await view(selector)).json()["status"] == "open")

        await eventually(lambda: is_open("sales"))
        assert (await view(primary)).json()["status"] == "waiting_qr"
        assert (await client.get(f"{API}/instance", headers=auth(alice_token))).json()[
            "instance_name"
        ] == primary
        await _scan(sim_url, primary, "5511900000001")
        await eventually(lambda: is_open(primary))
        by_name = (await view(second)).json()
        assert by_name["instance_name"] == second and by_name["phone_number"] == "5511900000002"
        opened = set()
        while opened != {primary, second}:
            frame = await wait_frame(
                ws, lambda f: f["type"] == "status" and f["data"]["status"] == "open"
            )
            opened.add(frame["data"]["instance_name"])
        note = await wait_frame(ws, lambda f: f["type"] == "notification")
        assert note["data"]["instance_name"] in (primary, second)

        tree = (await client.get("/admin/tree", headers=ADMIN)).json()
        actors = {entry["instance_name"]: entry for entry in _tree_entries(tree)}
        assert actors[primary]["status"] == "open" and actors[second]["status"] == "open"

        listed = (await client.get(f"{API}/instances", headers=auth(alice_token))).json()
        assert listed["max_instances"] == 3
        assert [(i["instance_name"], i["label"]) for i in listed["instances"]] == [
            (primary, None),
            (second, "sales"),
        ]

        # A message to the second number lands in the second instance only.
        async with http(sim_url) as sim:
            await sim_post_ok(
                sim,
                f"/_sim/instances/{second}/inbound",
                {"from": "5511988887777", "text": "to sales", "push_name": "Bia"},
            )
        message = await wait_frame(ws, lambda f: f["type"] == "message")
        assert message["data"]["instance_name"] == second
        assert message["data"]["text"] == "to sales"

        async def conversations(token: str, selector: str | None) -> Any:
            params = {} if selector is None else {"instance": selector}
            return await client.get(f"{API}/conversations", params=params, headers=auth(token))

        sales = (await conversations(alice_token, "sales")).json()["conversations"]
        assert [c["last_message"]["text"] for c in sales] == ["to sales"]
        assert (await conversations(alice_token, None)).json()["conversations"] == []
        sent = await client.post(
            f"{API}/messages",
            params={"instance": "sales"},
            headers=auth(alice_token),
            json={"to": "5511988887777", "text": "from sales"},
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["message"]["conversation_id"] == sales[0]["id"]
        receipt = await wait_frame(ws, lambda f: f["type"] == "message_status")
        assert receipt["data"]["instance_name"] == second
        async with http(sim_url) as sim:
            outbox = (await sim.get("/_sim/sent")).json()
        assert [(m["instance"], m["text"]) for m in outbox] == [(second, "from sales")]

        # A third instance fits; a fourth label is over the limit.
        third_answer = await connect(alice_token, params={"instance": "support"})
        assert third_answer.json()["instance"]["instance_name"] == third
        over = await connect(alice_token, json={"label": "extra"})
        assert over.status_code == 409 and over.json()["error"]["code"] == "instance_limit"
        bad = await connect(alice_token, json={"label": "user_x"})
        assert bad.status_code == 400

        # Bob can never select Alice's instances, by label or by name.
        for selector in ("sales", second, primary):
            assert (await view(selector, bob_token)).status_code == 404
            assert (await conversations(bob_token, selector)).status_code == 404
            refused = await client.post(
                f"{API}/logout", params={"instance": selector}, headers=auth(bob_token)
            )
            assert refused.status_code == 404
        assert (await connect(bob_token, params={"instance": second})).status_code == 404
        bobs = await connect(bob_token, json={"label": "sales"})
        assert bobs.json()["instance"]["instance_name"] == f"user_{bob}"
        assert (await view("sales")).json()["instance_name"] == second

        # Alice's per-user webhook URL takes any of her instances, never Bob's.
        data = {"instance": second, "state": "open", "statusReason": 200}
        for name, status in ((second, 200), (f"user_{bob}", 403)):
            hook = await client.post(
                f"/api/webhook/user/{alice}",
                json=envelope("connection.update", name, {**data, "instance": name}),
                headers=WEBHOOK_HEADERS,
            )
            assert hook.status_code == status, hook.text

        gone = await client.delete(
            f"{API}/instance", params={"instance": "support"}, headers=auth(alice_token)
        )
        assert gone.status_code == 204
        listed = (await client.get(f"{API}/instances", headers=auth(alice_token))).json()
        assert [i["instance_name"] for i in listed["instances"]] == [primary, second]
    rows = await fetch_rows(
        database_url,
        "SELECT instance_name, instance_label FROM whatsapp_instances WHERE user_id = $1"
        " ORDER BY instance_name",
        alice,
    )
    assert rows == [
        {"instance_name": primary, "instance_label": None},
        {"instance_name": second, "instance_label": "sales"},
    ]


def _tree_entries(tree: Any) -> list[dict[str, Any]]:
    """The actor entries of /admin/tree, wherever the tree nests them."""
    found: list[dict[str, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "instance_name" in node and "actor" in node:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


async def test_with_the_default_a_selector_only_selects(runner: ServiceRunner) -> None:
    service = await runner.start()
    user, other = uuid.uuid4(), uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    async with http(service.url) as client:
        # The body of a connect is not read with one instance per user, as before.
        answer = await client.post(f"{API}/connect", headers=auth(token), json={"label": "sales"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["instance"]["instance_name"] == name
        mine = await client.get(f"{API}/instance", params={"instance": name}, headers=auth(token))
        assert mine.json()["instance_name"] == name
        for selector in ("sales", f"user_{other}", f"{name}_2"):
            missing = await client.get(
                f"{API}/instance", params={"instance": selector}, headers=auth(token)
            )
            assert missing.status_code == 404
            created = await client.post(
                f"{API}/connect", params={"instance": selector}, headers=auth(token)
            )
            assert created.status_code == 404
        bad = await client.get(f"{API}/instance", params={"instance": "a/b"}, headers=auth(token))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_instance"
        listed = (await client.get(f"{API}/instances", headers=auth(token))).json()
        assert listed["max_instances"] == 1
        assert [(i["instance_name"], i["label"]) for i in listed["instances"]] == [(name, None)]
        # A second instance's name is not this user's at the per-user webhook URL.
        hook = await client.post(
            f"/api/webhook/user/{user}",
            json=envelope("connection.update", f"{name}_2", {"state": "open"}),
            headers=WEBHOOK_HEADERS,
        )
        assert hook.status_code == 403
    rows = await fetch_rows(
        runner.database_url,
        "SELECT instance_label FROM whatsapp_instances WHERE user_id = $1",
        user,
    )
    assert rows == [{"instance_label": None}]


def test_the_instance_review_knows_a_user_s_further_instances() -> None:
    """`instances check`: once the schema allows several instances per user, `user_<uuid>_<n>`
    of its own user is no stray name; another user's suffix, or any before, still is."""
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [
        Row(f"user_{alice}", alice),
        Row(f"user_{alice}_2", alice),
        Row(f"user_{alice}_3", bob),
    ]
    remotes = [Remote(name=row.name, evolution_id=f"id-{n}") for n, row in enumerate(rows)]
    one = review(rows, remotes, {})
    several = review(rows, remotes, {}, several=True)
    assert sorted((f.kind, f.name) for f in one.findings) == [
        (Kind.BAD_NAME, f"user_{alice}_2"),
        (Kind.BAD_NAME, f"user_{alice}_3"),
    ]
    assert [(f.kind, f.name) for f in several.findings] == [(Kind.BAD_NAME, f"user_{alice}_3")]
    assert one.plan == several.plan == []


async def test_schemathesis_on_the_user_routes_with_several_instances(
    runner: ServiceRunner, database_url: str
) -> None:
    """The user routes' selector, labels and limit under generated requests: no 5xx, every
    status documented, every answer as its schema says."""
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        await enable_multi_instance(pool)
    service = await runner.start(AUZAP_MAX_INSTANCES_PER_USER="3")
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client:
        answer = await client.post(f"{API}/connect", headers=auth(token), json={"label": "sales"})
        assert answer.status_code == 200, answer.text
    failures, counts = await trio.to_thread.run_sync(_fuzz, service.url, token, {}, "user")
    assert not failures, "\n\n".join(failures)
    assert f"POST {API}/connect positive" in counts and f"GET {API}/instances positive" in counts
