"""The auto-reply settings of `PATCH /api/whatsapp/settings`: validated (400 naming the
problem), refused without a responder (409), stored, shown in InstanceView, kept across a
restart, and obeyed (quiet hours, a human's recent answer, demo mode's offline responder)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from auzap_actors.ai import OfflineResponder
from auzap_actors.config import ConfigError
from auzap_actors.serve import make_responder

from .conftest import ServiceRunner, make_settings
from .fake_openai import FakeOpenAI, serve_fake_openai
from .helpers import auth, eventually, fetch_rows, http, open_instance, sim_post_ok, user_token

DEFAULTS = {
    "auto_reply_per_contact_hour": 5,
    "auto_reply_per_instance_day": 200,
    "auto_reply_quiet_hours": None,
    "auto_reply_human_pause_min": None,
    "auto_reply_groups": False,
}

BAD_BODIES: list[Any] = [
    {"auto_reply_per_contact_hour": 0},
    {"auto_reply_per_contact_hour": 101},
    {"auto_reply_per_contact_hour": "3"},
    {"auto_reply_per_contact_hour": True},
    {"auto_reply_per_contact_hour": 2.5},
    {"auto_reply_per_instance_day": 0},
    {"auto_reply_per_instance_day": None},
    {"auto_reply_human_pause_min": 0},
    {"auto_reply_human_pause_min": "10"},
    {"auto_reply_groups": "no"},
    {"auto_reply_quiet_hours": "22:00-07:00"},
    {"auto_reply_quiet_hours": {"start": "22:00", "end": "07:00"}},
    {"auto_reply_quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "UTC"}},
    {"auto_reply_quiet_hours": {"start": "7:00", "end": "08:00", "timezone": "UTC"}},
    {"auto_reply_quiet_hours": {"start": "07:00", "end": "07:00", "timezone": "UTC"}},
    {"auto_reply_quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}},
    {"auto_reply_quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "/etc/passwd"}},
    {"auto_reply_quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC", "x": 1}},
    {"auto_reply_temperature": 0.2},
]


async def test_limits_are_validated_stored_shown_and_kept(runner: ServiceRunner) -> None:
    # Without AUZAP_AI_BASE_URL the built-in offline responder answers (CONTRACT §1).
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client:
        connected = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert connected.status_code == 200, connected.text
        view = connected.json()["instance"]
        assert {key: view[key] for key in DEFAULTS} == DEFAULTS
        turned_on = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": True}
        )
        assert turned_on.status_code == 200, turned_on.text
        assert turned_on.json()["instance"]["auto_reply"] is True
        for body in BAD_BODIES:
            answer = await client.patch("/api/whatsapp/settings", headers=auth(token), json=body)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "invalid_settings" and error["message"], body
        wanted = {
            "auto_reply_per_contact_hour": 3,
            "auto_reply_per_instance_day": 50,
            "auto_reply_quiet_hours": {
                "start": "22:30",
                "end": "07:00",
                "timezone": "America/Sao_Paulo",
            },
            "auto_reply_human_pause_min": 15,
            "auto_reply_groups": True,
        }
        changed = await client.patch("/api/whatsapp/settings", headers=auth(token), json=wanted)
        assert changed.status_code == 200, changed.text
        view = changed.json()["instance"]
        assert {key: view[key] for key in wanted} == wanted and view["auto_reply"] is True
    rows = await fetch_rows(
        runner.database_url,
        "SELECT auto_reply_per_contact_hour AS hour, auto_reply_per_instance_day AS day,"
        " auto_reply_quiet_start AS qs, auto_reply_quiet_end AS qe, auto_reply_timezone AS tz,"
        " auto_reply_human_pause_min AS pause, auto_reply_groups AS groups"
        " FROM whatsapp_instances WHERE user_id = $1",
        user,
    )
    assert rows == [
        {
            "hour": 3,
            "day": 50,
            "qs": 22 * 60 + 30,
            "qe": 7 * 60,
            "tz": "America/Sao_Paulo",
            "pause": 15,
            "groups": True,
        }
    ]
    await runner.stop()
    service = await runner.start()
    async with http(service.url) as client:
        seen = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        assert {key: seen[key] for key in wanted} == wanted
        # null clears the optional ones; a key left out is kept.
        cleared = await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply_quiet_hours": None, "auto_reply_human_pause_min": None},
        )
        view = cleared.json()["instance"]
        assert view["auto_reply_quiet_hours"] is None and view["auto_reply_human_pause_min"] is None
        assert view["auto_reply_per_contact_hour"] == 3 and view["auto_reply_groups"] is True


async def _decisions(database_url: str, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        database_url,
        "SELECT state, reason FROM auto_replies WHERE instance_name = $1 ORDER BY id",
        name,
    )


async def test_quiet_hours_and_a_recent_human_answer_hold_replies_back(
    runner: ServiceRunner,
) -> None:
    fake = FakeOpenAI()
    ai_url = await runner.nursery.start(serve_fake_openai, fake)
    service = await runner.start(AUZAP_AI_BASE_URL=ai_url, AUZAP_AI_DEBOUNCE_S="0.1")
    user = uuid.uuid4()
    token = user_token(user)
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        name = await open_instance(client, sim, user, "5511900000401")
        on = await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply": True, "auto_reply_quiet_hours": quiet},
        )
        assert on.status_code == 200, on.text
        inbound = f"/_sim/instances/{name}/inbound"
        await sim_post_ok(sim, inbound, {"from": "5511988880401", "text": "Oi"})

        async def decided(count: int) -> bool:
            return len(await _decisions(runner.database_url, name)) == count

        await eventually(lambda: decided(1), timeout=10)
        # A human answers a contact from the API; with a 10 minute pause, that contact's
        # next message is left to them, while another contact is answered.
        await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply_quiet_hours": None, "auto_reply_human_pause_min": 10},
        )
        human = await client.post(
            "/api/whatsapp/messages",
            headers=auth(token),
            json={"to": "5511988880402", "text": "Olá, aqui é a Ana."},
        )
        assert human.status_code == 202, human.text
        await sim_post_ok(sim, inbound, {"from": "5511988880402", "text": "Oi Ana"})
        await eventually(lambda: decided(2), timeout=10)
        await sim_post_ok(sim, inbound, {"from": "5511988880403", "text": "Bom dia"})
        await eventually(lambda: decided(3), timeout=10)

        async def third_sent() -> bool:
            rows = await _decisions(runner.database_url, name)
            return rows[2]["state"] == "sent"

        await eventually(third_sent, timeout=10)
        sent = [s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name]
    assert await _decisions(runner.database_url, name) == [
        {"state": "skipped", "reason": "quiet hours"},
        {"state": "skipped", "reason": "a human answered within 10 min"},
        {"state": "sent", "reason": None},
    ]
    assert [s["remote_jid"] for s in sent] == [
        "5511988880402@s.whatsapp.net",  # the human's message
        "5511988880403@s.whatsapp.net",
    ]
    assert len(fake.requests) == 1


async def test_demo_mode_answers_offline_and_says_so(runner: ServiceRunner) -> None:
    service = await runner.start(demo=True, AUZAP_AI_DEBOUNCE_S="0.1")
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        name = await open_instance(client, sim, user, "5511900000501")
        on = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": True}
        )
        assert on.status_code == 200, on.text
        await sim_post_ok(
            sim, f"/_sim/instances/{name}/inbound", {"from": "5511988880501", "text": "Oi!"}
        )

        async def replied() -> list[dict[str, Any]]:
            sent: list[dict[str, Any]] = (await sim.get("/_sim/sent")).json()
            return [s for s in sent if s["instance"] == name]

        sent = await eventually(replied, timeout=10)
    assert len(sent) == 1 and sent[0]["text"].startswith("[Automatic reply]")
    assert '"Oi!"' in sent[0]["text"]


async def test_a_deleted_instance_leaves_no_reply_behind(runner: ServiceRunner) -> None:
    fake = FakeOpenAI()
    ai_url = await runner.nursery.start(serve_fake_openai, fake)
    service = await runner.start(AUZAP_AI_BASE_URL=ai_url, AUZAP_AI_DEBOUNCE_S="1.5")
    user = uuid.uuid4()
    token = user_token(user)
    async with http(service.url) as client, http(service.simulator_url or "") as sim:
        name = await open_instance(client, sim, user, "5511900000601")
        on = await client.patch(
            "/api/whatsapp/settings", headers=auth(token), json={"auto_reply": True}
        )
        assert on.status_code == 200, on.text
        await sim_post_ok(
            sim, f"/_sim/instances/{name}/inbound", {"from": "5511988880601", "text": "Oi"}
        )

        async def decided() -> bool:
            return bool(await _decisions(runner.database_url, name))

        await eventually(decided, timeout=10)
        deleted = await client.delete("/api/whatsapp/instance", headers=auth(token))
        assert deleted.status_code == 204, deleted.text
        await trio.sleep(2.0)  # past the reply's due time
        sent = [s for s in (await sim.get("/_sim/sent")).json() if s["instance"] == name]
    assert sent == [] and fake.requests == []
    assert await _decisions(runner.database_url, name) == [
        {"state": "skipped", "reason": "instance deleted"}
    ]


def test_auto_reply_variables(tmp_path: Path) -> None:
    base = make_settings("postgresql://x@/db", tmp_path)
    assert (base.ai_debounce_s, base.ai_attempts, base.ai_resend_grace_s) == (3.0, 2, 30.0)
    # No provider configured: the built-in offline responder (CONTRACT §1).
    assert isinstance(make_responder(base), OfflineResponder)
    for name, value in (
        ("AUZAP_AI_DEBOUNCE_S", "-1"),
        ("AUZAP_AI_ATTEMPTS", "0"),
        ("AUZAP_AI_TIMEOUT_S", "soon"),
        ("AUZAP_AI_BASE_URL", "ftp://ai"),
    ):
        with pytest.raises(ConfigError, match=name):
            make_settings("postgresql://x@/db", tmp_path, **{name: value})
