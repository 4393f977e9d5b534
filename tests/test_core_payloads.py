"""The payload parsers: arbitrary JSON gives records or clean WebhookErrors, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.payloads import (
    MESSAGE_EVENTS,
    STATUS_RANK,
    Alias,
    map_status,
    parse_batch,
    parse_message,
    resolve,
)
from auzap_actors.core.webhook import WebhookError

from . import strategies
from .payloads import text_message

json_values = strategies.json_values(max_leaves=25)
keys = st.sampled_from(
    [
        "key",
        "id",
        "remoteJid",
        "fromMe",
        "keyId",
        "status",
        "message",
        "messageTimestamp",
        "presences",
        "participants",
        "participantsData",
        "editedMessage",
        "timestampMs",
        "unreadMessages",
        "conversation",
    ]
)
shaped = st.recursive(
    json_values,
    lambda inner: st.dictionaries(keys, inner, max_size=6) | st.lists(inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=600)
@given(st.sampled_from(sorted(MESSAGE_EVENTS)), st.one_of(json_values, shaped))
def test_parsers_raise_only_clean_errors(event: str, data: Any) -> None:
    try:
        batch = parse_batch(event, data)
    except WebhookError as exc:
        assert exc.code and exc.message
        return
    assert batch is not None
    for message in batch.messages:
        assert message.status in STATUS_RANK and message.wa_id and message.chat_jid
        assert 0 <= message.timestamp <= 4_102_444_800


def test_status_mapping_and_jid_resolution() -> None:
    assert map_status("DELIVERY_ACK") == "delivered" and map_status(4) == "read"
    assert map_status("weird", "") == "" and map_status(True, "x") == "x"
    assert resolve("123@lid", "5511@s.whatsapp.net") == (
        "5511@s.whatsapp.net",
        Alias("123@lid", "5511@s.whatsapp.net"),
    )
    assert resolve("5511:7@s.whatsapp.net", None) == ("5511@s.whatsapp.net", None)


def test_message_shapes() -> None:
    record, aliases = parse_message(
        text_message("ID1", "123@lid", "oi", remote_jid_alt="5511999@s.whatsapp.net")
    )
    assert record is not None and record.chat_jid == "5511999@s.whatsapp.net"
    assert aliases == (Alias("123@lid", "5511999@s.whatsapp.net"),)
    image = {
        "key": {"remoteJid": "5511@s.whatsapp.net", "fromMe": False, "id": "X"},
        "message": {"imageMessage": {"caption": "foto", "mimetype": "image/jpeg"}},
        "messageType": "imageMessage",
        "messageTimestamp": {"low": 1795000000, "high": 0},
    }
    record, _ = parse_message(image)
    assert record is not None and (record.type, record.text) == ("image", "foto")
    assert record.timestamp == 1795000000
    assert parse_message({"key": {"remoteJid": "status@broadcast", "id": "S"}}) == (None, ())
