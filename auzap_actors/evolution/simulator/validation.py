"""Request-body checks with the messages the real server produces.

Evolution validates with the node ``jsonschema`` package and strips the leading
``instance.`` from each error's ``stack``, which gives messages like
``webhook.events[7] is not one of enum values: ...`` (facts §2, [ISS #2239]).
"""

from __future__ import annotations

from typing import Any

from ...core.events import ALLOWED_WEBHOOK_EVENTS
from .model import SimHTTPError

INTEGRATIONS = ("WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION")
_TYPE_NAMES = {bool: "boolean", str: "string", dict: "object", list: "array"}


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check_type(errors: list[str], obj: dict[str, Any], prefix: str, key: str, kind: type) -> None:
    if key in obj and not isinstance(obj[key], kind):
        errors.append(f"{_path(prefix, key)} is not of a type(s) {_TYPE_NAMES[kind]}")


def _require(errors: list[str], obj: dict[str, Any], prefix: str, key: str) -> None:
    if key not in obj:
        owner = prefix or "instance"  # the root keeps its "instance" name in the stack
        errors.append(f'{owner} requires property "{key}"')


def webhook_errors(hook: Any, prefix: str, *, require_enabled: bool) -> list[str]:
    if not isinstance(hook, dict):
        return [f"{prefix} is not of a type(s) object"]
    errors: list[str] = []
    if require_enabled:
        _require(errors, hook, prefix, "enabled")
    _require(errors, hook, prefix, "url")
    _check_type(errors, hook, prefix, "enabled", bool)
    _check_type(errors, hook, prefix, "url", str)
    _check_type(errors, hook, prefix, "byEvents", bool)
    _check_type(errors, hook, prefix, "base64", bool)
    _check_type(errors, hook, prefix, "headers", dict)
    _check_type(errors, hook, prefix, "events", list)
    events = hook.get("events")
    if isinstance(events, list):
        allowed = ",".join(ALLOWED_WEBHOOK_EVENTS)
        for index, name in enumerate(events):
            if name not in ALLOWED_WEBHOOK_EVENTS:
                errors.append(f"{prefix}.events[{index}] is not one of enum values: {allowed}")
    return errors


def missing_events_crash(hook: dict[str, Any]) -> bool:
    """True when the real server would read ``events.length`` of undefined (§2.2, §2.10;
    unconfirmed at runtime, but it pushes callers to send an explicit list)."""
    return bool(hook.get("enabled", True)) and "events" not in hook


TYPE_ERROR = "Cannot read properties of undefined (reading 'length')"


def validate_create(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SimHTTPError(400, ["instance is not of a type(s) object"])
    errors: list[str] = []
    _require(errors, body, "", "instanceName")
    _check_type(errors, body, "", "instanceName", str)
    _check_type(errors, body, "", "token", str)
    _check_type(errors, body, "", "qrcode", bool)
    _check_type(errors, body, "", "number", str)
    if isinstance(body.get("instanceName"), str) and not body["instanceName"].strip():
        errors.append("instanceName does not meet minimum length of 1")
    if "webhook" in body:
        errors += webhook_errors(body["webhook"], "webhook", require_enabled=False)
    if errors:
        raise SimHTTPError(400, errors)
    if body.get("integration") not in INTEGRATIONS:
        raise SimHTTPError(400, ["Invalid integration"])
    hook = body.get("webhook")
    if isinstance(hook, dict) and "events" not in hook:
        # On create the crash is caught, the instance rolled back, and a 400 returned.
        raise SimHTTPError(400, [TYPE_ERROR])
    return body


def validate_set_webhook(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SimHTTPError(400, ["instance is not of a type(s) object"])
    if "webhook" not in body:
        raise SimHTTPError(400, ['instance requires property "webhook"'])
    errors = webhook_errors(body["webhook"], "webhook", require_enabled=True)
    if errors:
        raise SimHTTPError(400, errors)
    hook: dict[str, Any] = body["webhook"]
    if missing_events_crash(hook):
        raise SimHTTPError(500, [TYPE_ERROR])  # uncaught in webhook/set: a 500
    return hook


def validate_send_text(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise SimHTTPError(400, ["instance is not of a type(s) object"])
    errors: list[str] = []
    _require(errors, body, "", "number")
    _require(errors, body, "", "text")
    _check_type(errors, body, "", "number", str)
    _check_type(errors, body, "", "text", str)
    if errors:
        raise SimHTTPError(400, errors)
    if not body["text"].strip():
        raise SimHTTPError(400, ["text does not meet minimum length of 1"])
    if not body["number"].strip():
        raise SimHTTPError(400, ["number does not meet minimum length of 1"])
    return body["number"], body["text"]


PRESENCES = ("available", "unavailable", "composing", "recording", "paused")


def validate_send_presence(body: Any) -> tuple[str, str, int]:
    """``POST /chat/sendPresence``: ``{number, presence, delay}`` (facts §2.9)."""
    if not isinstance(body, dict):
        raise SimHTTPError(400, ["instance is not of a type(s) object"])
    errors: list[str] = []
    _require(errors, body, "", "number")
    _require(errors, body, "", "presence")
    _check_type(errors, body, "", "number", str)
    _check_type(errors, body, "", "presence", str)
    if errors:
        raise SimHTTPError(400, errors)
    if body["presence"] not in PRESENCES:
        raise SimHTTPError(400, [f"presence must be one of {', '.join(PRESENCES)}"])
    delay = body.get("delay", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise SimHTTPError(400, ["delay must be a non-negative integer"])
    return body["number"], body["presence"], delay
