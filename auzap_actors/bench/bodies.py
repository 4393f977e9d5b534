"""Realistic Evolution v2 webhook bodies for the load generator (evolution-api-v2.md §3-4).

The mix the issue asks for: 70 % `messages.upsert`, 25 % `messages.update`, 5 % other events,
and 10 % of all requests repeat a body already sent (Evolution's re-deliveries).  Bodies are
about 1.2 KB, like a text message with Evolution's usual envelope.  Every run gets its own
`run_id`, so a second round never collides with the first one's rows.
"""

from __future__ import annotations

import json
import random
from collections import deque

_PADDING = "Olá! Gostaria de saber o horário de funcionamento amanhã e se há estacionamento. "


class WebhookMix:
    """Deterministic (seeded) stream of webhook bodies spread over `instances`."""

    def __init__(self, instances: list[str], run_id: str, seed: int = 7) -> None:
        if not instances:
            raise ValueError("at least one instance is needed")
        self._instances = instances
        self._run_id = run_id
        self._rng = random.Random(seed)
        self._count = 0
        self._recent: deque[bytes] = deque(maxlen=500)
        # Per instance, ids of messages we sent (fromMe), which receipts refer to.
        self._sent: dict[str, deque[str]] = {name: deque(maxlen=200) for name in instances}

    def next_body(self) -> bytes:
        roll = self._rng.random()
        if self._recent and roll < 0.10:
            return self._recent[self._rng.randrange(len(self._recent))]
        self._count += 1
        instance = self._instances[self._count % len(self._instances)]
        kind = self._rng.random()
        if kind < 0.70:
            data, event = self._upsert(instance), "messages.upsert"
        elif kind < 0.95:
            data, event = self._update(instance), "messages.update"
        else:
            data, event = self._presence(), "presence.update"
        body = json.dumps(self._envelope(event, instance, data), separators=(",", ":")).encode()
        self._recent.append(body)
        return body

    def upsert(self, instance: str) -> tuple[bytes, str]:
        """One new inbound `messages.upsert` (never a repeat): its body and WhatsApp id."""
        self._count += 1
        data = self._upsert(instance, from_me=False)
        body = json.dumps(
            self._envelope("messages.upsert", instance, data), separators=(",", ":")
        ).encode()
        key = data["key"]
        assert isinstance(key, dict)
        return body, str(key["id"])

    def _envelope(self, event: str, instance: str, data: object) -> dict[str, object]:
        n = self._count
        return {
            "event": event,
            "instance": instance,
            "data": data,
            "destination": "https://api.auzap.example/api/webhook/whatsapp",
            "date_time": f"2026-12-01T12:00:00.{n % 1000:03d}Z#{self._run_id}-{n}",
            "sender": "5511987650000@s.whatsapp.net",
            "server_url": "https://evolution.auzap.example",
            "apikey": None,
        }

    def _contact(self) -> str:
        return f"55119{self._rng.randrange(10_000_000, 99_999_999)}@s.whatsapp.net"

    def _upsert(self, instance: str, from_me: bool | None = None) -> dict[str, object]:
        if from_me is None:
            from_me = self._rng.random() < 0.2
        wa_id = f"3EB0{self._run_id.upper()}{self._count:012X}"
        if from_me:
            self._sent[instance].append(wa_id)
        start = self._rng.randrange(len(_PADDING))
        text = (_PADDING * 8)[start : start + 160 + self._rng.randrange(240)]
        return {
            "key": {"remoteJid": self._contact(), "fromMe": from_me, "id": wa_id},
            "pushName": "Você" if from_me else "Ana Souza",
            "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
            "message": {
                "conversation": text,
                "messageContextInfo": {
                    "deviceListMetadata": {
                        "senderKeyHash": "q3Bw0n5x1iDq0w==",
                        "senderTimestamp": "1764590000",
                        "recipientKeyHash": "b5u3kq2Z8m3xYg==",
                        "recipientTimestamp": "1764589000",
                    },
                    "deviceListMetadataVersion": 2,
                    "messageSecret": "m0Z3a1JjS0xvVnJ0bU1tZ2x3b3VxN0xCQ2dRZ2dXcG4=",
                },
            },
            "contextInfo": None,
            "messageType": "conversation",
            "messageTimestamp": 1_764_590_000 + self._count,
            "instanceId": "8f14e45f-ceea-467f-a0e6-0c1d2b3a4f5e",
            "source": "android",
        }

    def _update(self, instance: str) -> dict[str, object]:
        sent = self._sent[instance]
        key_id = sent[self._rng.randrange(len(sent))] if sent else f"3EB0UNKNOWN{self._count}"
        return {
            "keyId": key_id,
            "remoteJid": self._contact(),
            "fromMe": True,
            "participant": None,
            "status": self._rng.choice(["SERVER_ACK", "DELIVERY_ACK", "READ"]),
            "instanceId": "8f14e45f-ceea-467f-a0e6-0c1d2b3a4f5e",
            "messageId": f"cm{self._run_id}{self._count:010d}",
        }

    def _presence(self) -> dict[str, object]:
        jid = self._contact()
        return {"id": jid, "presences": {jid: {"lastKnownPresence": "composing"}}}
