"""Parsing Evolution webhook envelopes and turning them into state-machine events.

Pure functions over plain data.  Every failure is a `WebhookError` with a machine code and a
sentence a human can act on; no other exception escapes `parse_envelope`, whatever the input.
"""

from __future__ import annotations

import hashlib
import json
import math
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


# The replay corpus of real Evolution bodies nests 6 levels at most (a quoted message inside a
# message adds a few).  Deeper documents are refused at the door: encoding them again (the dedup
# key, the inbox's jsonb text) and walking them while applying would otherwise meet Python's
# recursion limit somewhere, after the parse or after the 200, as a 500 or a row that can never
# be applied.
MAX_JSON_DEPTH = 64
# Python refuses to convert longer integer literals (a plain ValueError: CVE-2020-10735).
MAX_INT_DIGITS = 4300


def _invalid(detail: str) -> WebhookError:
    return WebhookError("invalid_json", f"The body is not valid JSON: {detail}")


def _parse_constant(name: str) -> Any:
    # Python's json accepts these; JSON does not, nor does PostgreSQL's jsonb.
    raise _invalid(f"{name} is not a JSON number.")


def _parse_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise _invalid(f"an integer has more than {MAX_INT_DIGITS} digits.")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 would become Infinity, which jsonb refuses
        raise _invalid(f"the number {text[:40]} is out of range.")
    return value


def _too_deep(value: Any, text: str) -> bool:
    """Whether `value` nests deeper than MAX_JSON_DEPTH, without recursion."""
    # Nesting never exceeds the count of opening brackets (strings included): most bodies are
    # cleared by two C-speed counts, without walking them.
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def decode_json(body: bytes) -> Any:
    """Strict JSON decode of a request body, as a WebhookError on failure: invalid UTF-8 or
    JSON, NaN and Infinity, integers over MAX_INT_DIGITS digits, numbers out of a float's
    range, nesting deeper than MAX_JSON_DEPTH."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookError("invalid_encoding", "The body is not UTF-8 encoded JSON.") from None
    too_deep = f"it nests deeper than {MAX_JSON_DEPTH} levels."
    try:
        value = json.loads(
            text,
            parse_constant=_parse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise _invalid(f"{exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:
        raise _invalid(too_deep) from None
    if isinstance(value, dict | list) and _too_deep(value, text):
        raise _invalid(too_deep)
    return value


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


def dedup_key(envelope: Envelope) -> str | None:
    """Identity of one delivery: Evolution re-sends the same body on retries.

    `date_time` is part of it so that two genuinely separate events with equal data (an
    `open` after a reconnect, say) are both kept.  Without a `date_time` (older senders on the
    legacy route) nothing tells a re-delivery from a new event with equal data: None, and the
    caller stores every delivery.  Applying is idempotent, so a re-delivery stored twice is
    harmless; two `open` events minutes apart collapsed into one would lose the second.
    """
    if envelope.date_time is None:
        return None
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
