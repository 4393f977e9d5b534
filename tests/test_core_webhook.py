"""Webhook envelopes as pure functions (core.webhook, core.events): event names in every
spelling, envelope parsing and its errors, dedup keys, the state events a payload carries, and
only clean errors for arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auzap_actors.core.events import normalize_event
from auzap_actors.core.state import ConnectionClosed, ConnectionOpened, QrExpired, QrUpdated
from auzap_actors.core.webhook import (
    WebhookError,
    decode_json,
    dedup_key,
    parse_envelope,
    state_event,
)

from . import strategies


def test_event_names_in_every_spelling() -> None:
    assert normalize_event("messages.upsert") == "messages.upsert"
    assert normalize_event("MESSAGES_UPSERT") == "messages.upsert"
    assert normalize_event("messages-upsert") == "messages.upsert"
    assert normalize_event("GROUP_PARTICIPANTS_UPDATE") == "group-participants.update"
    assert normalize_event("GROUP_UPDATE") == "groups.update"
    assert normalize_event("QRCODE_UPDATED") == "qrcode.updated"


def test_envelope_parsing_and_errors() -> None:
    env = parse_envelope({"event": "connection.update", "instance": "user_x", "data": {}})
    assert (env.event, env.instance) == ("connection.update", "user_x")
    legacy = parse_envelope(
        {"event": "QRCODE_UPDATED", "instance": {"instanceName": "user_x"}, "data": {}},
        legacy=True,
    )
    assert (legacy.event, legacy.instance) == ("qrcode.updated", "user_x")
    with pytest.raises(WebhookError, match="no `event`"):
        parse_envelope({"instance": "x"})
    with pytest.raises(WebhookError, match="no `instance`"):
        parse_envelope({"event": "call", "instance": {"instanceName": "x"}})
    with pytest.raises(WebhookError, match="not valid JSON"):
        decode_json(b'{"event": ')
    with pytest.raises(WebhookError, match="URL names event"):
        parse_envelope({"event": "call", "instance": "x"}, slug="messages-upsert")


def test_dedup_key_is_stable_and_distinguishes_separate_events() -> None:
    body = {
        "event": "connection.update",
        "instance": "i",
        "data": {"state": "open"},
        "date_time": "2026-11-29T10:00:00.000Z",
    }
    same = json.loads(json.dumps(body))
    later = dict(body, date_time="2026-11-29T10:05:00.000Z")
    assert dedup_key(parse_envelope(body)) == dedup_key(parse_envelope(same))
    assert dedup_key(parse_envelope(body)) != dedup_key(parse_envelope(later))


def test_state_events_from_payloads() -> None:
    qr = {
        "qrcode": {
            "instance": "i",
            "pairingCode": None,
            "code": "1@x",
            "base64": "data:image/png;base64,iVBOR",
        }
    }
    assert state_event("qrcode.updated", qr) == QrUpdated("data:image/png;base64,iVBOR")
    limit = {"message": "QR code limit reached, please login again", "statusCode": 500}
    assert state_event("qrcode.updated", limit) == QrExpired()
    opened = {
        "instance": "i",
        "wuid": "5511999990000@s.whatsapp.net",
        "profileName": "Ana",
        "profilePictureUrl": None,
        "state": "open",
        "statusReason": 200,
    }
    assert state_event("connection.update", opened) == ConnectionOpened("5511999990000", "Ana")
    closed = {"instance": "i", "state": "close", "statusReason": 401}
    assert state_event("connection.update", closed) == ConnectionClosed(401)
    refused = {"instance": "i", "state": "refused", "statusReason": 428}
    assert state_event("connection.update", refused) == QrExpired()
    assert state_event("messages.upsert", {"key": {}}) is None
    with pytest.raises(WebhookError):
        state_event("connection.update", {"state": "sideways"})


json_values = strategies.json_values(max_leaves=20)


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "event": st.sampled_from(["connection.update", "qrcode.updated", "x"])
                | json_values,
                "instance": st.text(max_size=5) | json_values,
                "data": json_values,
            }
        ),
    )
)
def test_parser_raises_only_clean_errors(payload: Any) -> None:
    try:
        env = parse_envelope(payload, legacy=True)
        state_event(env.event, env.data)
        dedup_key(env)
    except WebhookError as exc:
        assert exc.code and exc.message
