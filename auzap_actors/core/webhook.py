"""Parsing Evolution webhook envelopes and turning them into state-machine events.

Pure functions over plain data.  Every failure is a `WebhookError` with a machine code and a
sentence a human can act on; no other exception escapes `parse_envelope`, whatever the input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .events import normalize_event
from .state import (
    ConnectionClosed,
    ConnectionConnecting,
    ConnectionOpened,
    Event,
    LoggedOut,
    QrExpired,
    QrUpdated,
)

MAX_INSTANCE_NAME = 200
# The header that carries the webhook secret (CONTRACT §2); set in every instance's webhook
# config.
WEBHOOK_SECRET_HEADER = "X-Auzap-Webhook-Secret"


class WebhookError(ValueError):
    """A webhook body we will never accept (answered 400; Evolution stops retrying)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Envelope:
    event: str  # dotted lower-case, possibly unknown to us (kept, stored as unhandled)
    instance: str
    data: Any
    date_time: str | None
    raw: dict[str, Any]


def decode_json(body: bytes) -> Any:
    """Strict JSON decode of a request body, as a WebhookError on failure."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookError("invalid_encoding", "The body is not UTF-8 encoded JSON.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookError(
            "invalid_json",
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
        ) from None
    except RecursionError:
        raise WebhookError(
            "invalid_json", "The body is not valid JSON: nesting too deep."
        ) from None


def parse_envelope(payload: Any, *, legacy: bool = False, slug: str | None = None) -> Envelope:
    """Validate the envelope of a webhook (evolution-api-v2.md §3.2).

    `legacy` accepts the older shapes (`instance` as an object, upper-snake event names);
    `slug` is the by-events URL suffix, used when the body carries no `event`.
    """
    if not isinstance(payload, dict):
        raise WebhookError("invalid_envelope", "The webhook body must be a JSON object.")
    raw_event = payload.get("event")
    if raw_event is None and slug:
        raw_event = slug
    if not isinstance(raw_event, str) or not raw_event.strip():
        raise WebhookError("missing_event", "The webhook envelope has no `event` string.")
    if len(raw_event) > 100 or not raw_event.isprintable():
        raise WebhookError("invalid_event", "The `event` field is too long or not printable.")
    event = normalize_event(raw_event)
    if slug is not None and normalize_event(slug) != event:
        raise WebhookError(
            "event_mismatch", f"The URL names event {slug!r} but the body says {raw_event!r}."
        )

    instance = payload.get("instance")
    if legacy and isinstance(instance, dict):
        instance = instance.get("instanceName") or instance.get("name")
    if not isinstance(instance, str) or not instance.strip():
        raise WebhookError(
            "missing_instance", "The webhook envelope has no `instance` name string."
        )
    if len(instance) > MAX_INSTANCE_NAME or not instance.isprintable():
        raise WebhookError("invalid_instance", "The `instance` name is too long or not printable.")
    date_time = payload.get("date_time")
    return Envelope(
        event=event,
        instance=instance.strip(),
        data=payload.get("data"),
        date_time=date_time if isinstance(date_time, str) else None,
        # Evolution puts the instance's own API key in every envelope: it is a credential, and
        # nothing we store or show may carry it.
        raw={k: v for k, v in payload.items() if k != "apikey"},
    )


def dedup_key(envelope: Envelope) -> str:
    """Identity of one delivery: Evolution re-sends the same body on retries.

    `date_time` is part of it so that two genuinely separate events with equal data (an
    `open` after a reconnect, say) are both kept.
    """
    canonical = json.dumps(
        [envelope.instance, envelope.event, envelope.date_time, envelope.data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# ---- events the instance state machine consumes ---------------------------------------------

QR_LIMIT_MARKER = "limit reached"


def phone_from_jid(jid: Any) -> str | None:
    """`5511999999999:12@s.whatsapp.net` -> `5511999999999`; None for anything else."""
    if not isinstance(jid, str) or "@" not in jid:
        return None
    user = jid.split("@", 1)[0].split(":", 1)[0]
    return user if user.isdigit() else None


def state_event(event: str, data: Any) -> Event | None:
    """The state-machine event carried by a webhook, or None if it carries none.

    Raises WebhookError when a state-relevant event has a malformed payload.
    """
    if event == "qrcode.updated":
        if not isinstance(data, dict):
            raise WebhookError("invalid_data", "qrcode.updated needs an object `data`.")
        qrcode = data.get("qrcode")
        if isinstance(qrcode, dict):
            base64 = qrcode.get("base64")
            if isinstance(base64, str) and base64.startswith("data:image/"):
                return QrUpdated(base64)
            raise WebhookError("invalid_data", "qrcode.updated has no `qrcode.base64` data URL.")
        message = data.get("message")
        if isinstance(message, str) and QR_LIMIT_MARKER in message.lower():
            return QrExpired()
        raise WebhookError("invalid_data", "qrcode.updated has neither a QR code nor a message.")
    if event == "connection.update":
        if not isinstance(data, dict):
            raise WebhookError("invalid_data", "connection.update needs an object `data`.")
        state = data.get("state")
        reason = data.get("statusReason")
        reason = reason if isinstance(reason, int) and not isinstance(reason, bool) else None
        if state == "open":
            profile = data.get("profileName")
            return ConnectionOpened(
                phone_number=phone_from_jid(data.get("wuid")),
                profile_name=profile if isinstance(profile, str) else None,
            )
        if state == "connecting":
            return ConnectionConnecting()
        if state == "refused":
            return QrExpired()
        if state == "close":
            return ConnectionClosed(reason)
        raise WebhookError("invalid_data", f"connection.update has unknown state {state!r}.")
    if event in ("logout.instance", "remove.instance"):
        return LoggedOut()
    return None
