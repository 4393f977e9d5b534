"""Inbox rows that cannot be applied: retried in place, then settled as failed and shown to
operators, never dropped silently and never blocking the rows behind them."""

from __future__ import annotations

import uuid

from auzap_actors.store.db import open_pool
from auzap_actors.store.inbox import MAX_ATTEMPTS

from .conftest import ADMIN_TOKEN, ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, user_token
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
