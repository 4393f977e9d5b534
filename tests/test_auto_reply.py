"""AI auto-reply end to end (README "AI auto-reply"): messages reach the service through the
simulator (or as forged webhooks), the responder is a local fake server speaking the OpenAI
chat-completions protocol over real HTTP, and replies are seen where WhatsApp would see them:
the simulator's `GET /_sim/sent`."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from auzap_actors.serve import Running

from .conftest import ADMIN_TOKEN, ServiceRunner
from .fake_openai import FakeOpenAI, serve_fake_openai
from .helpers import (
    WEBHOOK_HEADERS,
    auth,
    barrier,
    eventually,
    fetch_rows,
    http,
    next_frame,
    open_instance,
    scrape,
    sim_post_ok,
    socket_url,
    user_token,
    value,
    wait_frame,
)
from .payloads import envelope, text_message

PROMPT = "You are the assistant of Padaria Pão Quente. Mention our opening hours: 7h to 19h."
API_KEY = "sk-test-secret-key-123"


async def _start(runner: ServiceRunner, fake: FakeOpenAI, **overrides: str) -> Running:
    url = await runner.nursery.start(serve_fake_openai, fake)
    settings = {
        "AUZAP_AI_BASE_URL": url,
        "AUZAP_AI_API_KEY": API_KEY,
        "AUZAP_AI_MODEL": "test-model",
        "AUZAP_AI_DEBOUNCE_S": "0.3",
        "AUZAP_AI_TYPING_MS": "0",
        "AUZAP_AI_TIMEOUT_S": "1",
        "AUZAP_AI_ATTEMPTS": "2",
    }
    settings.update(overrides)
    return await runner.start(**settings)


async def _connected(
    service: Running, user: uuid.UUID, phone: str, **limits: Any
) -> tuple[str, str]:
    """Open `user`'s instance and turn auto-reply on; returns (instance name, token)."""
    token = user_token(user)
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url or "", user, phone)
        answer = await client.patch(
            "/api/whatsapp/settings",
            headers=auth(token),
            json={"auto_reply": True, "auto_reply_prompt": PROMPT, **limits},
        )
        assert answer.status_code == 200, answer.text
    return name, token


async def _sent(service: Running, name: str) -> list[dict[str, Any]]:
    async with http(service.simulator_url or "") as sim:
        sent: list[dict[str, Any]] = (await sim.get("/_sim/sent")).json()
    return [s for s in sent if s["instance"] == name]


async def _inbound(service: Running, name: str, sender: str, text: str) -> str:
    async with http(service.simulator_url or "") as sim:
        answer = await sim_post_ok(
            sim, f"/_sim/instances/{name}/inbound", {"from": sender, "text": text}
        )
    wa_id: str = answer.json()["id"]
    return wa_id


async def _replies(database_url: str, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        database_url,
        "SELECT trigger_wa_id, chat_jid, state, reason, answers, reply_wa_id FROM auto_replies"
        " WHERE instance_name = $1 ORDER BY id",
        name,
    )


async def _tree(service: Running) -> dict[str, Any]:
    async with http(service.url) as client:
        tree: dict[str, Any] = (await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))).json()
    return tree


async def test_a_reply_carries_prompt_and_context_and_provider_failures_change_nothing_else(
    runner: ServiceRunner, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeOpenAI()
    service = await _start(runner, fake)
    user = uuid.uuid4()
    name, token = await _connected(service, user, "5511900000101")
    contact = "5511988880001"
    jid = f"{contact}@s.whatsapp.net"
    ws_url = socket_url(service, token)
    async with open_websocket_url(ws_url) as ws:
        await next_frame(ws)  # the snapshot
        await _inbound(service, name, contact, "Bom dia!")
        await eventually(lambda: _sent_count(service, name, 1), timeout=10)
        first = (await _sent(service, name))[0]
        assert first["remote_jid"] == jid
        assert first["text"] == "Reply to 1 message(s), last: Bom dia!"
        # The reply is stored as an auto-reply and pushed like any message.
        pushed = await wait_frame(
            ws, lambda f: f["type"] == "message" and f["data"]["from_me"], timeout=10
        )
        assert pushed["data"]["auto_reply"] is True and pushed["data"]["text"] == first["text"]

        await _inbound(service, name, contact, "Vocês abrem domingo?")
        await eventually(lambda: _sent_count(service, name, 2), timeout=10)

        async def both_stored() -> bool:
            rows = await _replies(runner.database_url, name)
            return [r["state"] for r in rows] == ["sent", "sent"]

        await eventually(both_stored, timeout=10)  # the simulator answered before we stored

    # The second request: the business's prompt, then the conversation so far.
    assert len(fake.requests) == 2
    request = fake.requests[1]
    assert request["model"] == "test-model"
    assert (
        request["messages"][0]["role"] == "system" and PROMPT in request["messages"][0]["content"]
    )
    assert [(m["role"], m["content"]) for m in request["messages"][1:]] == [
        ("user", "Bom dia!"),
        ("assistant", "Reply to 1 message(s), last: Bom dia!"),
        ("user", "Vocês abrem domingo?"),
    ]
    assert fake.auth_headers == [f"Bearer {API_KEY}"] * 2
    # Typing before each send, in the reply's chat.
    async with http(service.simulator_url or "") as sim:
        presences = [p for p in (await sim.get("/_sim/presences")).json() if p["instance"] == name]
    assert [(p["remote_jid"], p["presence"]) for p in presences] == [(jid, "composing")] * 2
    stored = await fetch_rows(
        runner.database_url,
        "SELECT text, auto_reply FROM messages WHERE instance_name = $1 AND from_me ORDER BY seq",
        name,
    )
    assert [r["auto_reply"] for r in stored] == [True, True]

    # The provider fails (500, then too slow): no reply, a logged and counted failure, and
    # the incoming messages are stored and pushed all the same.
    caplog.set_level(logging.WARNING, logger="auzap_actors")
    async with open_websocket_url(ws_url) as ws:
        await next_frame(ws)
        for mode, text in (("error", "Tem pão de queijo?"), ("slow", "Alô?")):
            fake.mode = mode  # type: ignore[assignment]
            before = len(fake.requests)
            await _inbound(service, name, contact, text)
            frame = await wait_frame(ws, lambda f: f["type"] == "message", timeout=10)
            assert frame["data"]["text"] == text and frame["data"]["from_me"] is False

            async def settled_failed(text: str = text) -> bool:
                rows = await _replies(runner.database_url, name)
                return rows[-1]["state"] == "failed"

            await eventually(settled_failed, timeout=15)
            assert len(fake.requests) == before + 2  # one retry (AUZAP_AI_ATTEMPTS=2)
    assert len(await _sent(service, name)) == 2
    rows = await _replies(runner.database_url, name)
    assert [r["state"] for r in rows] == ["sent", "sent", "failed", "failed"]
    assert "500" in rows[2]["reason"] and "did not answer within 1 s" in rows[3]["reason"]
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert any("auto-reply" in line and "500" in line for line in failures), failures
    assert not any(API_KEY in r.getMessage() for r in caplog.records)
    tree = await _tree(service)
    auto = tree["auto_reply"]
    assert auto["counts"]["sent"] == 2 and auto["counts"]["failed"] == 2
    assert service.actors.auto_reply_counts() == auto["counts"]
    assert auto["responder"]["name"] == "openai" and auto["responder"]["failures"] == 2
    assert auto["responder"]["breaker"]["status"] == "closed"
    assert API_KEY not in str(tree)
    # The same counts reach Prometheus (auzap_auto_replies_total{outcome}).
    async with http(service.url) as client:
        samples = await scrape(client)
    assert value(samples, "auzap_auto_replies_total", outcome="sent") == 2
    assert value(samples, "auzap_auto_replies_total", outcome="failed") == 2
    messages = await fetch_rows(
        runner.database_url,
        "SELECT text FROM messages WHERE instance_name = $1 AND NOT from_me ORDER BY seq",
        name,
    )
    assert [m["text"] for m in messages] == [
        "Bom dia!",
        "Vocês abrem domingo?",
        "Tem pão de queijo?",
        "Alô?",
    ]


async def _settled(database_url: str, name: str) -> bool:
    """Every decision made so far is sent or skipped (and stored: the simulator's list shows
    a send before the service has stored it)."""
    rows = await _replies(database_url, name)
    return bool(rows) and all(r["state"] in ("sent", "skipped") for r in rows)


async def _sent_count(service: Running, name: str, wanted: int) -> bool:
    return len(await _sent(service, name)) >= wanted


async def test_replays_and_messages_that_must_never_be_answered(runner: ServiceRunner) -> None:
    fake = FakeOpenAI()
    service = await _start(runner, fake)
    user = uuid.uuid4()
    name, _ = await _connected(service, user, "5511900000102")
    contact_jid = "5511988880002@s.whatsapp.net"
    trigger = envelope("messages.upsert", name, text_message("3EB0AAAA0001", contact_jid, "Oi"))
    async with http(service.url) as client:
        for copy in range(5):
            # The same delivery five times (a duplicate of the inbox), and five more
            # deliveries of the same message under new envelopes (Evolution's re-sends).
            again = envelope(
                "messages.upsert", name, text_message("3EB0AAAA0001", contact_jid, "Oi")
            )
            for body in (trigger, again):
                answer = await client.post(
                    "/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS
                )
                assert answer.status_code == 200, answer.text
            if copy == 2:
                await barrier(service, name)
        await eventually(lambda: _sent_count(service, name, 1), timeout=10)
        reply = (await _sent(service, name))[0]

        # Never answered: our own messages, groups, status broadcasts, and the echo of the
        # service's own auto-reply.
        never = [
            text_message("3EB0BBBB0001", contact_jid, "sent from the phone", from_me=True),
            text_message(
                "3EB0BBBB0002",
                "120363025555555555@g.us",
                "oi grupo",
                participant="5511977770000@s.whatsapp.net",
            ),
            text_message("3EB0BBBB0003", "status@broadcast", "my story"),
            text_message(reply["id"], contact_jid, reply["text"], from_me=True),
        ]
        for data in never:
            for event in ("messages.upsert", "send.message"):
                answer = await client.post(
                    "/api/webhook/whatsapp",
                    json=envelope(event, name, data),
                    headers=WEBHOOK_HEADERS,
                )
                assert answer.status_code == 200, answer.text
        await barrier(service, name)
        await trio.sleep(1.5)  # five debounce windows: anything decided would be sent
    assert len(await _sent(service, name)) == 1
    assert len(fake.requests) == 1
    rows = await _replies(runner.database_url, name)
    assert [(r["trigger_wa_id"], r["state"]) for r in rows] == [("3EB0AAAA0001", "sent")]
    assert rows[0]["reply_wa_id"] == reply["id"]
    # The group message and our own were stored all the same (status broadcasts never are).
    stored = await fetch_rows(
        runner.database_url,
        "SELECT wa_message_id FROM messages WHERE instance_name = $1 ORDER BY seq",
        name,
    )
    assert {"3EB0BBBB0001", "3EB0BBBB0002"} <= {r["wa_message_id"] for r in stored}


async def test_five_messages_within_the_debounce_window_get_one_reply(
    runner: ServiceRunner,
) -> None:
    fake = FakeOpenAI()
    service = await _start(runner, fake, AUZAP_AI_DEBOUNCE_S="1.5")
    user = uuid.uuid4()
    name, _ = await _connected(service, user, "5511900000103")
    texts = ["Oi", "tudo bem?", "queria saber", "o preço do bolo", "de chocolate"]
    for text in texts:
        await _inbound(service, name, "5511988880003", text)
        await trio.sleep(0.2)
    await eventually(lambda: _sent_count(service, name, 1), timeout=10)
    await trio.sleep(2.0)  # another window: no second reply follows
    sent = await _sent(service, name)
    assert len(sent) == 1
    assert len(fake.requests) == 1
    assert fake.user_texts() == texts
    assert sent[0]["text"] == "Reply to 5 message(s), last: de chocolate"
    rows = await _replies(runner.database_url, name)
    assert [(r["state"], r["answers"]) for r in rows] == [("sent", 5)]


async def test_the_contact_limit_holds_under_a_burst_of_fifty(runner: ServiceRunner) -> None:
    fake = FakeOpenAI()
    service = await _start(runner, fake, AUZAP_AI_DEBOUNCE_S="0.2")
    user = uuid.uuid4()
    name, _ = await _connected(service, user, "5511900000104", auto_reply_per_contact_hour=3)
    contact = "5511988880004@s.whatsapp.net"
    async with http(service.url) as client:

        async def deliver(n: int) -> None:
            body = envelope(
                "messages.upsert", name, text_message(f"3EB0CCCC{n:04d}", contact, f"msg {n}")
            )
            answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert answer.status_code == 200, answer.text

        # Fifty messages in ten waves of five, each wave after the previous one's reply (or
        # its refusal) settled: without the limit this would be ten replies.
        for wave in range(10):
            async with trio.open_nursery() as nursery:
                for n in range(wave * 5, wave * 5 + 5):
                    nursery.start_soon(deliver, n)

            await eventually(lambda: _settled(runner.database_url, name), timeout=10)
        # Another contact is not held back by the first one's limit.
        other = envelope(
            "messages.upsert",
            name,
            text_message("3EB0DDDD0001", "5511988880005@s.whatsapp.net", "oi"),
        )
        assert (
            await client.post("/api/webhook/whatsapp", json=other, headers=WEBHOOK_HEADERS)
        ).status_code == 200
        await eventually(lambda: _sent_count(service, name, 4), timeout=10)
        await eventually(lambda: _settled(runner.database_url, name), timeout=10)
    sent = await _sent(service, name)
    to_first = [s for s in sent if s["remote_jid"] == contact]
    assert len(to_first) == 3
    rows = await _replies(runner.database_url, name)
    skipped = [r for r in rows if r["state"] == "skipped"]
    assert skipped and all(r["reason"] == "contact limit (3 per hour)" for r in skipped)
    assert (
        sum(r["answers"] for r in rows if r["chat_jid"] == contact and r["state"] == "sent")
        + len(skipped)
        == 50
    )
    stored = await fetch_rows(
        runner.database_url,
        "SELECT count(*) AS n FROM messages WHERE instance_name = $1 AND NOT from_me",
        name,
    )
    assert stored == [{"n": 51}]
    tree = await _tree(service)
    assert tree["auto_reply"]["counts"]["sent"] == 4
    assert tree["auto_reply"]["skipped_reasons"] == {"contact limit": len(skipped)}


async def test_a_refusing_or_unreachable_provider_is_a_failure_without_retry_storms(
    runner: ServiceRunner,
) -> None:
    """A 4xx is final (one request, no retry); an unreachable provider is retried once and
    then counted as a failure."""
    fake = FakeOpenAI(mode="refuse")
    service = await _start(runner, fake)
    user = uuid.uuid4()
    name, _ = await _connected(service, user, "5511900000105")
    await _inbound(service, name, "5511988880006", "Oi")

    async def last_failed() -> bool:
        rows = await _replies(runner.database_url, name)
        return bool(rows) and rows[-1]["state"] == "failed"

    await eventually(last_failed, timeout=10)
    assert len(fake.requests) == 1
    assert "refused the request (400)" in (await _replies(runner.database_url, name))[0]["reason"]

    await runner.stop()
    service = await _start(runner, fake, AUZAP_AI_BASE_URL="http://127.0.0.1:9/v1")
    # Straight to the new service (the simulator learns its new URL only at the actor's boot).
    body = envelope(
        "messages.upsert",
        name,
        text_message("3EB0EEEE0001", "5511988880006@s.whatsapp.net", "Alguém aí?"),
    )
    async with http(service.url) as client:
        answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200, answer.text

    async def two_failed() -> bool:
        rows = await _replies(runner.database_url, name)
        return len(rows) == 2 and rows[-1]["state"] == "failed"

    await eventually(two_failed, timeout=10)
    assert "unreachable" in (await _replies(runner.database_url, name))[1]["reason"]
    assert await _sent(service, name) == []
    assert (await _tree(service))["auto_reply"]["responder"]["failures"] == 1
