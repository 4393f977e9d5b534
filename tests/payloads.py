"""Builders of realistic Evolution v2 webhook bodies for tests (evolution-api-v2.md §3.2, §4)."""

from __future__ import annotations

import itertools
from typing import Any

INSTANCE_ID = "8f14e45f-ceea-467f-a0e6-0c1d2b3a4f5e"
_clock = itertools.count(1_795_000_000)


def envelope(event: str, instance: str, data: Any, *, when: str | None = None) -> dict[str, Any]:
    stamp = next(_clock)
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": "https://api.auzap.example/api/webhook/whatsapp",
        "date_time": when or f"2026-11-20T12:00:00.{stamp % 1000:03d}Z#{stamp}",
        "sender": "5511987650000@s.whatsapp.net",
        "server_url": "https://evolution.auzap.example",
        "apikey": None,
    }


def text_message(
    wa_id: str,
    remote_jid: str,
    text: str,
    *,
    from_me: bool = False,
    push_name: str | None = "Ana Souza",
    timestamp: int = 1_795_000_000,
    status: str | None = None,
    remote_jid_alt: str | None = None,
    participant: str | None = None,
) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": remote_jid, "fromMe": from_me, "id": wa_id}
    if remote_jid_alt:
        key["remoteJidAlt"] = remote_jid_alt
        key["addressingMode"] = "lid"
    if participant:
        key["participant"] = participant
    return {
        "key": key,
        "pushName": "Você" if from_me else push_name,
        "status": status or ("SERVER_ACK" if from_me else "DELIVERY_ACK"),
        "message": {"conversation": text},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": timestamp,
        "instanceId": INSTANCE_ID,
        "source": "android",
    }
