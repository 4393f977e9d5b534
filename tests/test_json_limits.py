"""JSON that Python's parser accepts but the service cannot keep: deep nesting, integers over
Python's 4,300-digit limit, NaN and Infinity (PostgreSQL's jsonb refuses them), numbers out of
a float's range.  Every JSON route answers them 400 with the standard error body, never 500,
and keeps serving."""

from __future__ import annotations

import uuid

import httpx

from auzap_actors.core.webhook import MAX_INT_DIGITS, MAX_JSON_DEPTH

from .conftest import ServiceRunner
from .helpers import WEBHOOK_HEADERS, auth, eventually, fetch_rows, http, user_token

WEBHOOK_ROUTES = ["/api/webhook/whatsapp", "/api/webhook/evolution", "/api/webhook/test"]


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def in_envelope(data: str, instance: str = "user_json_limits") -> str:
    """An otherwise valid envelope with `data` (JSON text) inside: nesting depth + 1."""
    return (
        '{"event":"messages.upsert","instance":"' + instance + '",'
        '"date_time":"' + uuid.uuid4().hex + '","data":' + data + "}"
    )


def send_body(text: str) -> str:
    return '{"to":"5511999990000","text":"oi","extra":' + text + "}"


# (what, body as the webhook routes get it, the words the 400's message must contain)
BAD_BODIES = [
    ("600 nested lists", nested_lists(600), "nests deeper than"),
    ("600 nested objects", nested_objects(600), "nests deeper than"),
    ("100,000 nested lists", nested_lists(100_000), "nests deeper than"),
    ("deep data in an envelope", in_envelope(nested_objects(600)), "nests deeper than"),
    ("one level too deep", in_envelope(nested_lists(MAX_JSON_DEPTH)), "nests deeper than"),
    ("5,000-digit integer", in_envelope('{"n":' + "7" * 5000 + "}"), "more than 4300 digits"),
    ("negative huge integer", in_envelope("[-" + "9" * 4301 + "]"), "more than 4300 digits"),
    ("NaN", in_envelope('{"reading":NaN}'), "NaN is not a JSON number"),
    ("Infinity", in_envelope('{"reading":Infinity}'), "Infinity is not a JSON number"),
    ("-Infinity", in_envelope("[-Infinity]"), "-Infinity is not a JSON number"),
    ("a float out of range", in_envelope('{"x":1e999}'), "1e999 is out of range"),
]


def assert_refused(answer: httpx.Response, words: str, what: str) -> None:
    assert answer.status_code == 400, (what, answer.status_code, answer.text[:300])
    error = answer.json()["error"]
    assert set(answer.json()) == {"error"} and set(error) == {"code", "message"}, what
    assert error["code"] == "invalid_json", (what, error)
    assert error["message"].startswith("The body is not valid JSON: "), (what, error)
    assert words in error["message"], (what, error)


API_MAX_BYTES = 64 * 1024  # AUZAP_API_MAX_BYTES's default


async def test_every_json_route_refuses_what_it_cannot_keep(runner: ServiceRunner) -> None:
    assert MAX_INT_DIGITS == 4300
    service = await runner.start()
    user = uuid.uuid4()
    headers = {**WEBHOOK_HEADERS, "Content-Type": "application/json"}
    send_headers = {**auth(user_token(user)), "Content-Type": "application/json"}
    async with http(service.url) as client:
        for what, body, words in BAD_BODIES:
            for route in WEBHOOK_ROUTES:
                answer = await client.post(route, content=body, headers=headers)
                assert_refused(answer, words, f"{what} to {route}")
            to_api = send_body(body)
            answer = await client.post(
                "/api/whatsapp/messages", content=to_api, headers=send_headers
            )
            if len(to_api) > API_MAX_BYTES:
                # Over the user API's body limit: refused before it is parsed.
                assert answer.status_code == 413, (what, answer.text[:300])
            else:
                assert_refused(answer, words, f"{what} to /api/whatsapp/messages")
        # Nothing of it was stored, and the service still takes webhooks.
        assert await fetch_rows(runner.database_url, "SELECT id FROM webhook_inbox") == []
        fine = await client.post(
            "/api/webhook/whatsapp", content=in_envelope("{}"), headers=headers
        )
        assert fine.status_code == 200, fine.text


async def test_nesting_up_to_the_limit_is_stored_and_applied(runner: ServiceRunner) -> None:
    """The deepest body accepted goes all the way: stored (jsonb), and applied by the actor of
    a real instance without an error."""
    service = await runner.start()
    user = uuid.uuid4()
    name = f"user_{user}"
    async with http(service.url) as client:
        answer = await client.post("/api/whatsapp/connect", headers=auth(user_token(user)))
        assert answer.status_code == 200, answer.text
        # A message whose `contextInfo` nests down to the limit (the envelope is level 1).
        deep = nested_objects(MAX_JSON_DEPTH - 4)
        data = (
            '{"key":{"remoteJid":"5511988887777@s.whatsapp.net","fromMe":false,'
            '"id":"3EB0DEEP00000001"},"pushName":"Ana","messageType":"conversation",'
            '"message":{"conversation":"oi"},"messageTimestamp":1795000000,'
            '"contextInfo":{"x":{"y":' + deep + "}}}"
        )
        for route in WEBHOOK_ROUTES:
            posted = await client.post(
                route,
                content=in_envelope(data, name),
                headers={**WEBHOOK_HEADERS, "Content-Type": "application/json"},
            )
            assert posted.status_code == 200, (route, posted.text)

        async def settled() -> list[dict[str, object]]:
            rows = await fetch_rows(
                runner.database_url,
                "SELECT outcome, last_error FROM webhook_inbox WHERE instance_name = $1"
                " AND event = 'messages.upsert' AND applied_at IS NOT NULL",
                name,
            )
            return rows if len(rows) == 2 else []

        # Two routes store (the dry run does not); both rows applied, none failed.
        rows = await eventually(settled, timeout=10)
        assert [r["outcome"] for r in rows] == ["applied", "applied"], rows
        messages = await fetch_rows(
            runner.database_url,
            "SELECT text FROM messages WHERE instance_name = $1",
            name,
        )
        assert messages == [{"text": "oi"}]
