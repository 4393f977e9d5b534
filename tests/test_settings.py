"""`PATCH /api/whatsapp/settings` (CONTRACT §3): the change goes through the instance's actor,
is stored, and survives a restart of the service."""

from __future__ import annotations

import uuid
from typing import Any

from .conftest import ServiceRunner
from .helpers import auth, fetch_rows, http, user_token

PROMPT = "Answer in Portuguese, politely."
# Auto-reply can be turned on only with a responder (an AI provider outside demo mode); these
# tests never reach it (no message arrives).  Without one: tests/test_auto_reply_settings.py.
AI = {"AUZAP_AI_BASE_URL": "http://ai.invalid/v1"}


async def test_settings_are_applied_stored_and_survive_a_restart(runner: ServiceRunner) -> None:
    service = await runner.start(**AI)
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client:
        connected = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert connected.status_code == 200, connected.text
        assert connected.json()["instance"]["auto_reply"] is False

        answer = await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply": True, "auto_reply_prompt": PROMPT},
        )
        assert answer.status_code == 200, answer.text
        instance = answer.json()["instance"]
        assert instance["auto_reply"] is True and instance["instance_name"] == f"user_{user}"
        assert "auto_reply_prompt" not in instance  # the view is CONTRACT's InstanceView

        # One key alone changes that one only.
        only_flag = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": True}
        )
        assert only_flag.status_code == 200, only_flag.text

        seen = await client.get("/api/whatsapp/instance", headers=auth(token))
        assert seen.status_code == 200 and seen.json()["auto_reply"] is True

    rows = await fetch_rows(
        runner.database_url,
        "SELECT auto_reply, auto_reply_prompt FROM whatsapp_instances WHERE user_id = $1",
        user,
    )
    assert rows == [{"auto_reply": True, "auto_reply_prompt": PROMPT}]

    await runner.stop()
    service = await runner.start(**AI)
    async with http(service.url) as client:
        seen = await client.get("/api/whatsapp/instance", headers=auth(token))
        assert seen.status_code == 200 and seen.json()["auto_reply"] is True
        # The actor came back with the prompt too: changing the flag alone keeps it.
        off = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": False}
        )
        assert off.status_code == 200 and off.json()["instance"]["auto_reply"] is False
    rows = await fetch_rows(
        runner.database_url,
        "SELECT auto_reply, auto_reply_prompt FROM whatsapp_instances WHERE user_id = $1",
        user,
    )
    assert rows == [{"auto_reply": False, "auto_reply_prompt": PROMPT}]


BAD_BODIES: list[Any] = [
    [],
    "auto_reply",
    {},
    {"auto_reply": "yes"},
    {"auto_reply": 1},
    {"auto_reply": None},
    {"auto_reply_prompt": 42},
    {"auto_reply_prompt": None},
    {"auto_reply_prompt": "x" * 4001},
    {"auto_reply_prompt": "a\x00b"},
    {"auto_reply": True, "model": "gpt"},
]


async def test_bad_input_no_instance_and_no_token(runner: ServiceRunner) -> None:
    service = await runner.start(**AI)
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client:
        # No instance yet: 404 (a valid body).
        missing = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": True}
        )
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "not_found"

        no_token = await client.patch("/api/whatsapp/settings", json={"auto_reply": True})
        assert no_token.status_code == 401, no_token.text

        connected = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert connected.status_code == 200, connected.text
        for body in BAD_BODIES:
            answer = await client.patch("/api/whatsapp/settings", headers=auth(token), json=body)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert set(error) == {"code", "message"} and error["message"], body
        not_json = await client.patch(
            "/api/whatsapp/settings",
            headers={**auth(token), "Content-Type": "application/json"},
            content=b"{not json",
        )
        assert not_json.status_code == 400
        assert set(not_json.json()["error"]) == {"code", "message"}

        # The longest prompt allowed is taken; nothing bad was stored.
        longest = await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply_prompt": "x" * 4000},
        )
        assert longest.status_code == 200, longest.text
        assert longest.json()["instance"]["auto_reply"] is False
    rows = await fetch_rows(
        runner.database_url,
        "SELECT auto_reply, length(auto_reply_prompt) AS n FROM whatsapp_instances"
        " WHERE user_id = $1",
        user,
    )
    assert rows == [{"auto_reply": False, "n": 4000}]
