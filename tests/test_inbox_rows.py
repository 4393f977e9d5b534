"""Inbox rows that cannot be applied: retried in place, then settled as failed and shown to
operators, never dropped silently and never blocking the rows behind them."""

from __future__ import annotations

import uuid

from auzap_actors.store.db import open_pool
from auzap_actors.store.inbox import MAX_ATTEMPTS

from .conftest import ADMIN_TOKEN, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, inbox_settled, user_token
from .payloads import envelope, text_message

# The database refuses this message, as a constraint or trigger added by a DBA would: the apply
# step raises a database error that is neither transient nor the event's data being invalid.
POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.wa_message_id = 'POISON' THEN
    RAISE EXCEPTION 'poisoned for the test';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


async def test_a_poisoned_row_is_settled_as_failed_and_the_rows_behind_it_are_applied(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(POISON)
    user = uuid.uuid4()
    name = f"user_{user}"
    async with http(service.url) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200
        ids = ["3EB0AAAA00000001", "POISON", "3EB0AAAA00000002", "3EB0AAAA00000003"]
        for n, wa_id in enumerate(ids):
            body = envelope(
                "messages.upsert",
                name,
                text_message(wa_id, f"5511988{n:06d}@s.whatsapp.net", f"texto {n}"),
            )
            posted = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert posted.status_code == 200, posted.text

        async def applied() -> list[str]:
            rows = await fetch_rows(
                runner.database_url,
                "SELECT wa_message_id FROM messages WHERE instance_name = $1 ORDER BY seq",
                name,
            )
            return [r["wa_message_id"] for r in rows]

        async def three_applied() -> bool:
            return len(await applied()) == 3

        await eventually(three_applied, timeout=15)
        assert await applied() == [ids[0], ids[2], ids[3]]

        (row,) = await fetch_rows(
            runner.database_url,
            "SELECT outcome, attempts, applied_at IS NOT NULL AS settled, last_error"
            " FROM webhook_inbox WHERE payload -> 'data' -> 'key' ->> 'id' = 'POISON'",
        )
        assert row["outcome"] == "error" and row["settled"]
        assert row["attempts"] == MAX_ATTEMPTS
        assert "poisoned for the test" in row["last_error"]

        tree = (await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))).json()
        (entry,) = [a for a in tree["actors"] if a["instance_name"] == name]
        assert entry["actor"] == "running" and entry["restarts"] == 0
        assert entry["failed_rows"]["count"] == 1
        (latest,) = entry["failed_rows"]["latest"]
        assert latest["event"] == "messages.upsert"
        assert "poisoned for the test" in latest["error"]


async def test_rows_stored_while_down_are_applied_as_groups_and_a_poisoned_one_alone(
    runner: ServiceRunner,
) -> None:
    """Rows waiting at boot are applied in groups (one transaction each); a row the database
    refuses rolls its group back, and the group is applied row by row: the poisoned row is
    settled as failed, every other row of the group is applied once, in order."""
    service = await runner.start()
    user = uuid.uuid4()
    name = f"user_{user}"
    async with http(service.url) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200
    await runner.stop()
    await _store_while_down(runner, name, [f"3EB0CLEAN{n:08d}" for n in range(10)], "clean")
    await runner.start()
    await eventually(lambda: inbox_settled(runner.database_url, name), timeout=20)
    # One group, one transaction: the rows share the transaction's timestamp.
    (clean,) = await fetch_rows(
        runner.database_url,
        "SELECT count(*) AS n, count(DISTINCT applied_at) AS commits FROM webhook_inbox"
        " WHERE dedup_key LIKE 'clean-%' AND outcome = 'applied'",
    )
    assert clean == {"n": 10, "commits": 1}
    await runner.stop()

    ids = [f"3EB0GROUP{n:08d}" for n in range(30)]
    ids[17] = "POISON"
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await pool.execute(POISON)
    await _store_while_down(runner, name, ids, "group-test")
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        # A receipt for an earlier message of the same group: applied after it.
        receipt = envelope(
            "messages.update",
            name,
            {"keyId": ids[3], "remoteJid": "5511977000003@s.whatsapp.net", "fromMe": False,
             "status": "READ", "participant": None},
        )  # fmt: skip
        await pool.execute(
            "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
            " VALUES ('group-test-receipt', $1, 'messages.update', $2)",
            name,
            receipt,
        )
    await runner.start()
    await eventually(lambda: inbox_settled(runner.database_url, name), timeout=20)
    stored = await fetch_rows(
        runner.database_url,
        "SELECT wa_message_id, status FROM messages WHERE instance_name = $1"
        " AND wa_message_id NOT LIKE '3EB0CLEAN%' ORDER BY seq",
        name,
    )
    assert [r["wa_message_id"] for r in stored] == [i for i in ids if i != "POISON"]
    assert {r["wa_message_id"]: r["status"] for r in stored}[ids[3]] == "read"
    outcomes = await fetch_rows(
        runner.database_url,
        "SELECT outcome, count(*) AS n FROM webhook_inbox WHERE instance_name = $1"
        " AND dedup_key LIKE 'group-test-%' GROUP BY outcome",
        name,
    )
    assert {r["outcome"]: r["n"] for r in outcomes} == {"applied": 30, "error": 1}


async def _store_while_down(runner: ServiceRunner, name: str, ids: list[str], tag: str) -> None:
    """Text messages stored in the inbox as the webhook route would, while no actor runs."""
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        for n, wa_id in enumerate(ids):
            body = envelope(
                "messages.upsert",
                name,
                text_message(wa_id, f"5511977{n % 4:06d}@s.whatsapp.net", f"texto {n}"),
            )
            await pool.execute(
                "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
                " VALUES ($1, $2, 'messages.upsert', $3)",
                f"{tag}-{n}",
                name,
                body,
            )
