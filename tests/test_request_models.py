"""The request models of web/models.py, parsed by web/request_parsing.py: what they accept,
the 400 each refusal becomes (its code, a message naming the field), and that the schema they
give `/openapi.json` states the same bounds.  Pure: no service (the routes are covered by
test_settings.py, test_messages_flow.py and the schemathesis run of test_openapi.py)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auzap_actors.web.errors import ApiError
from auzap_actors.web.models import (
    MAX_PROMPT,
    MAX_TEXT,
    RECIPIENT_PATTERN,
    DeleteQuery,
    PageQuery,
    SendMessage,
    SettingsChange,
)
from auzap_actors.web.request_parsing import parse_body, parse_query


def _refused(model: Any, body: Any) -> tuple[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ApiError) as caught:
        parse_body(model, raw)
    assert caught.value.status == 400
    return caught.value.code, caught.value.message


@pytest.mark.parametrize(
    ("to", "normalised"),
    [
        ("5511988887777", "5511988887777"),
        ("+55 11 98888 7777", "5511988887777"),
        ("  5511988887777\n", "5511988887777"),
        ("5511988887777@s.whatsapp.net", "5511988887777@s.whatsapp.net"),
        ("120363025246125486@g.us", "120363025246125486@g.us"),
        ("5511988887777-1612345678@g.us", "5511988887777-1612345678@g.us"),
        ("123456789012345@lid", "123456789012345@lid"),
    ],
)
def test_recipients_taken(to: str, normalised: str) -> None:
    message = parse_body(SendMessage, json.dumps({"to": to, "text": "oi"}).encode())
    assert message.recipient() == normalised
    # Other keys are ignored, as they always were on this route.
    assert parse_body(SendMessage, json.dumps({"to": to, "text": "x", "k": 1}).encode())


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"to": "abc", "text": "x"}, "invalid_recipient", "`to` must be a phone number"),
        ({"to": "(11) 98888-7777", "text": "x"}, "invalid_recipient", "`to`"),
        ({"to": "٥٥١١٩٨٨٨٨٧٧٧٧", "text": "x"}, "invalid_recipient", "`to`"),  # not ASCII
        ({"to": 5511988887777, "text": "x"}, "invalid_recipient", "`to` must be a string"),
        ({"text": "x"}, "invalid_recipient", "`to` is required"),
        ({"to": "5511988887777"}, "invalid_text", "`text` is required"),
        ({"to": "5511988887777", "text": ""}, "invalid_text", "`text` must not be empty"),
        ({"to": "5511988887777", "text": " \n\t"}, "invalid_text", "`text` must be a non-empty"),
        ({"to": "5511988887777", "text": "a\x00b"}, "invalid_text", "without NUL characters"),
        ({"to": "5511988887777", "text": "\x00"}, "invalid_text", "without NUL characters"),
        (
            {"to": "5511988887777", "text": "x" * (MAX_TEXT + 1)},
            "invalid_text",
            f"`text` is longer than {MAX_TEXT} characters",
        ),
        (b'{"to": "5511988887777", "text": "a\\ud800"}', "invalid_json", "unpaired"),
        (b'{"to": "5511988887777", "text": "\\udc00x"}', "invalid_json", "unpaired"),
        (b'{"to": "5511988887777", "text": "x", "\\ud800": 1}', "invalid_json", "unpaired"),
        ([], "invalid_json", "JSON object"),
        (b"{", "invalid_json", "JSON"),
        (b'{"to": NaN}', "invalid_json", "NaN"),
    ],
)
def test_message_refusals(body: Any, code: str, words: str) -> None:
    refused_code, message = _refused(SendMessage, body)
    assert refused_code == code, message
    assert words in message, message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "Give at least one of `auto_reply`, `auto_reply_prompt`"),
        ({"auto_reply": "yes"}, "`auto_reply` must be true or false"),
        ({"auto_reply": 1}, "`auto_reply` must be true or false, not int"),
        ({"auto_reply": None}, "`auto_reply` must be true or false, not null"),
        ({"auto_reply_prompt": 42}, "`auto_reply_prompt` must be a string"),
        ({"auto_reply_prompt": "x" * (MAX_PROMPT + 1)}, "longer than 4000 characters"),
        ({"auto_reply_prompt": "a\x00b"}, "without NUL characters"),
        ({"auto_reply": True, "model": "gpt", "a": 1}, "Unknown fields: `a`, `model`."),
        (b'{"auto_reply_prompt": "x\\ud800"}', "unpaired UTF-16 surrogate"),
    ],
)
def test_settings_refusals(body: Any, words: str) -> None:
    code, message = _refused(SettingsChange, body)
    assert code == ("invalid_json" if "surrogate" in words else "invalid_settings")
    assert words in message, message


def test_settings_taken() -> None:
    both = parse_body(SettingsChange, b'{"auto_reply": true, "auto_reply_prompt": ""}')
    assert both.auto_reply is True and both.auto_reply_prompt == ""
    one = parse_body(SettingsChange, b'{"auto_reply_prompt": "' + b"x" * MAX_PROMPT + b'"}')
    assert one.auto_reply is msgspec.UNSET and len(one.auto_reply_prompt) == MAX_PROMPT  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, (50, None)),
        ({"limit": "1", "before": ""}, (1, None)),
        ({"limit": "200", "before": "abc", "other": "x"}, (200, "abc")),
        ({"limit": "007"}, (7, None)),
    ],
)
def test_page_query_taken(args: dict[str, str], expected: tuple[int, str | None]) -> None:
    page = parse_query(PageQuery, args)
    assert (page.limit, page.before) == expected


@pytest.mark.parametrize("limit", ["0", "201", "-1", "+5", "5.0", "1e2", "²", "x", " 5"])
def test_page_query_refusals(limit: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_query(PageQuery, {"limit": limit})
    assert (caught.value.status, caught.value.code) == (400, "invalid_limit")
    assert caught.value.message == "`limit` must be a whole number from 1 to 200."


def test_purge_query() -> None:
    assert parse_query(DeleteQuery, {}).purge is False
    assert parse_query(DeleteQuery, {"purge": "TRUE"}).purge is True
    assert parse_query(DeleteQuery, {"purge": "false"}).purge is False
    for bad in ("1", "yes", "maybe"):
        with pytest.raises(ApiError) as caught:
            parse_query(DeleteQuery, {"purge": bad})
        assert caught.value.code == "invalid_purge" and "`purge`" in caught.value.message


@given(st.from_regex(RECIPIENT_PATTERN, fullmatch=False))
def test_whatever_the_schema_allows_as_recipient_is_taken(to: str) -> None:
    # The pattern in the document is the pattern the server checks; what it lets through
    # normalises to digits or a jid without spaces.
    message = parse_body(SendMessage, json.dumps({"to": to, "text": "x"}).encode())
    recipient = message.recipient()
    assert " " not in recipient and not recipient.startswith("+"), recipient
