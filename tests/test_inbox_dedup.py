"""What counts as the same event.

- An envelope with a `date_time` is one delivery: its re-deliveries are duplicates.
- Without a `date_time` (older senders, the legacy route) nothing tells a re-delivery from a
  new event with equal data, so every delivery is stored and applied (applying is idempotent);
  two `open` events minutes apart must not collapse into one.
- Copies of one event inside one group-commit batch share the first copy's outcome: a copy of
  a refused event is refused too, never a 200.
"""

from __future__ import annotations

import uuid
from typing import Any

import trio

from auzap_actors.core.webhook import dedup_key, parse_envelope
from auzap_actors.store.inbox import InboxEntry, InboxRejected, InboxWriter

from .conftest import ServiceRunner
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    eventually,
    fetch_rows,
    http,
    qr_webhook_applied,
    user_token,
)


def legacy_update(name: str, state: str, date_time: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": "CONNECTION_UPDATE",
        "instance": {"instanceName": name},
        "data": {"instance": name, "state": state, "statusReason": 200},
    }
    if state == "open":
        body["data"].update(wuid="5511955550000@s.whatsapp.net", profileName="Ana")
    if date_time is not None:
        body["date_time"] = date_time
    return body


def test_dedup_key_needs_a_date_time() -> None:
    undated = parse_envelope(legacy_update("user_x", "open"), legacy=True)
    assert dedup_key(undated) is None
    dated = parse_envelope(legacy_update("user_x", "open", "2026-11-29T10:00:00Z"), legacy=True)
    assert dedup_key(dated) == dedup_key(
        parse_envelope(legacy_update("user_x", "open", "2026-11-29T10:00:00Z"), legacy=True)
    )


async def test_undated_events_with_equal_data_are_all_applied(runner: ServiceRunner) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    name = f"user_{user}"
    async with http(service.url) as client:
        assert (await client.post("/api/whatsapp/connect", headers=auth(token))).status_code == 200

        # The simulator's own connecting/QR webhooks land first, so ours are the last word.
        await eventually(lambda: qr_webhook_applied(runner.database_url, name))
        dry = await client.post(
            "/api/webhook/test", json=legacy_update(name, "open"), headers=WEBHOOK_HEADERS
        )
        assert dry.status_code == 200 and dry.json()["dedup_key"] is None, dry.text
        # open, a silent drop (connecting), open again minutes later: the same body twice.
        for state in ("open", "connecting", "open"):
            answer = await client.post(
                "/api/webhook/evolution", json=legacy_update(name, state), headers=WEBHOOK_HEADERS
            )
            assert answer.json() == {"accepted": True, "duplicate": False}, answer.text

        async def ours_applied() -> list[dict[str, Any]]:
            rows = await fetch_rows(
                runner.database_url,
                "SELECT payload->'data'->>'state' AS state, outcome FROM webhook_inbox"
                " WHERE instance_name = $1 AND NOT (payload ? 'date_time')"
                " AND applied_at IS NOT NULL ORDER BY id",
                name,
            )
            return rows if len(rows) == 3 else []

        rows = await eventually(ours_applied, timeout=10)
        assert [r["state"] for r in rows] == ["open", "connecting", "open"]
        assert {r["outcome"] for r in rows} == {"applied"}
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert view["status"] == "open", view

        # With a date_time, a re-delivery is a duplicate, on the legacy route too.
        dated = legacy_update(name, "open", "2026-11-29T10:00:00Z")
        for duplicate in (False, True):
            answer = await client.post(
                "/api/webhook/evolution", json=dated, headers=WEBHOOK_HEADERS
            )
            assert answer.json() == {"accepted": True, "duplicate": duplicate}, answer.text


async def test_copies_in_one_batch_share_the_first_copy_s_outcome(database_url: str) -> None:
    writer = InboxWriter(database_url, on_committed=lambda names: None, linger_s=0.5)
    good = InboxEntry(uuid.uuid4().hex, "user_copies", "call", {"id": "CALL1"})
    # json.dumps writes NaN; jsonb refuses it (22P02): the database refuses this event itself.
    bad = InboxEntry(uuid.uuid4().hex, "user_copies", "call", {"reading": float("nan")})
    outcomes: dict[str, list[str]] = {"good": [], "bad": []}

    async def submit(label: str, entry: InboxEntry) -> None:
        try:
            duplicate = await writer.submit(entry)
        except InboxRejected:
            outcomes[label].append("rejected")
        else:
            outcomes[label].append("duplicate" if duplicate else "stored")

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        # A long linger gathers all four into one batch, the copies behind their originals.
        async with trio.open_nursery() as batch:
            for label, entry in [("bad", bad), ("good", good), ("bad", bad), ("good", good)]:
                batch.start_soon(submit, label, entry)
                await trio.sleep(0.01)
        assert writer.batches == 1
        nursery.cancel_scope.cancel()
    # The waiters wake in any order once their batch is settled.
    assert sorted(outcomes["good"]) == ["duplicate", "stored"]
    assert outcomes["bad"] == ["rejected", "rejected"]
    rows = await fetch_rows(database_url, "SELECT dedup_key FROM webhook_inbox")
    assert rows == [{"dedup_key": good.dedup_key}]
