"""`GET /api/whatsapp/export` (CONTRACT §3): the user's backup as streamed NDJSON, read in
pages (store/export.py), only ever the caller's own rows."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from auzap_actors.store.db import open_pool
from auzap_actors.store.export import export_lines

from .conftest import ServiceRunner
from .helpers import auth, http, store_messages, user_token

CHATS = (
    "5511911110001@s.whatsapp.net",
    "5511911110002@s.whatsapp.net",
    "5511911110003@s.whatsapp.net",
)
PER_CHAT = 400  # 1,200 messages: more than two pages of 500 in one chat


async def _instance(client: httpx.AsyncClient, user: uuid.UUID) -> str:
    answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
    assert answer.status_code == 200, answer.text
    return f"user_{user}"


async def _export(client: httpx.AsyncClient, token: str) -> tuple[httpx.Response, list[Any]]:
    async with client.stream("GET", "/api/whatsapp/export", headers=auth(token)) as answer:
        raw = b"".join([chunk async for chunk in answer.aiter_bytes()])
    assert raw.endswith(b"\n")
    return answer, [json.loads(line) for line in raw.decode().splitlines()]


async def test_export_streams_everything_of_the_user_and_nothing_else(
    runner: ServiceRunner, database_url: str
) -> None:
    service = await runner.start()
    user, other = uuid.uuid4(), uuid.uuid4()
    async with http(service.url, timeout=60) as client:
        name = await _instance(client, user)
        other_name = await _instance(client, other)
        await store_messages(client, database_url, name, CHATS, PER_CHAT)
        foreign = ("5511922220001@s.whatsapp.net",)
        await store_messages(client, database_url, other_name, foreign, 50)

        started = time.monotonic()
        answer, lines = await _export(client, user_token(user))
        elapsed = time.monotonic() - started
        print(f"export: {len(lines)} lines in {elapsed:.2f}s")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    header, end = lines[0], lines[-1]
    assert header["type"] == "export" and header["version"] == 1
    assert header["instance_name"] == name and header["exported_at"].endswith("Z")
    kinds = [line["type"] for line in lines[1:-1]]
    # The order of the sections: contacts, then conversations, then messages.
    assert kinds == sorted(kinds, key=["contact", "conversation", "message"].index)
    contacts = [line["data"] for line in lines if line["type"] == "contact"]
    conversations = [line["data"] for line in lines if line["type"] == "conversation"]
    messages = [line["data"] for line in lines if line["type"] == "message"]
    assert end == {
        "type": "end",
        "counts": {
            "contacts": len(contacts),
            "conversations": 3,
            "messages": len(CHATS) * PER_CHAT,
        },
    }
    assert sorted(c["remote_jid"] for c in conversations) == sorted(CHATS)
    assert {c["remote_jid"] for c in contacts} >= set(CHATS)
    assert len(messages) == 1200 and len({m["id"] for m in messages}) == 1200
    by_conversation = {c["id"]: c for c in conversations}
    for message in messages:
        assert by_conversation[message["conversation_id"]]["remote_jid"] == message["remote_jid"]
    # Conversation by conversation, oldest first.
    for conversation in conversations:
        own = [m["timestamp"] for m in messages if m["conversation_id"] == conversation["id"]]
        assert len(own) == PER_CHAT and own == sorted(own)
        assert conversation["last_message"]["timestamp"] == own[-1]
    assert messages[0]["text"] == "mensagem 0 — olá"
    text = json.dumps(lines)
    assert "5511922220001" not in text and other_name not in text
    assert "evolution_token" not in text and "apikey" not in text

    # The other user's export holds only theirs.
    async with http(service.url, timeout=60) as client:
        _answer, theirs = await _export(client, user_token(other))
    assert theirs[-1]["counts"]["messages"] == 50
    assert {line["data"]["remote_jid"] for line in theirs[1:-1]} == set(foreign)

    # Small pages give the same lines: every section is read across page boundaries.
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        paged = [
            json.loads(json.dumps(line, default=str))
            async for line in export_lines(pool, name, datetime.now(UTC), page_size=2)
        ]
    assert paged[1:] == lines[1:]


async def test_export_needs_a_token_and_an_instance(runner: ServiceRunner) -> None:
    service = await runner.start()
    async with http(service.url) as client:
        anonymous = await client.get("/api/whatsapp/export")
        assert anonymous.status_code == 401
        nobody = await client.get("/api/whatsapp/export", headers=auth(user_token(uuid.uuid4())))
        assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "not_found"
        # An instance without any message: the header and the end line.
        user = uuid.uuid4()
        name = await _instance(client, user)
        answer, lines = await _export(client, user_token(user))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert lines[0]["instance_name"] == name
    assert lines[-1] == {
        "type": "end",
        "counts": {"contacts": 0, "conversations": 0, "messages": 0},
    }
