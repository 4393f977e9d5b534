"""Evolution v2's answers decoded into our types, and the webhook config it is sent (facts
§2); used by the client (`client.py`)."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import EvolutionServerError, error_for_status
from .types import ConnectResult, InstanceInfo, QrCode, WebhookConfig


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: Any) -> int | None:
    # bool is an int subclass; a JSON true is never a status code.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_qr(obj: dict[str, Any]) -> QrCode:
    count = _opt_int(obj.get("count"))
    return QrCode(
        base64=_opt_str(obj.get("base64")),
        code=_opt_str(obj.get("code")),
        pairing_code=_opt_str(obj.get("pairingCode")),
        count=count or 0,
    )


def parse_connect(body: Any) -> ConnectResult:
    """Decode the polymorphic answer of connect/restart (facts §2.3)."""
    if not isinstance(body, dict):
        return ConnectResult(state=None, qr=None)
    instance = body.get("instance")
    qrcode = body.get("qrcode")
    if isinstance(instance, dict):
        state = _opt_str(instance.get("state")) or _opt_str(instance.get("status"))
        qr = parse_qr(qrcode) if isinstance(qrcode, dict) else None
        return ConnectResult(state=state, qr=qr)
    if any(key in body for key in ("count", "base64", "code", "pairingCode")):
        # A bare QR object means the server is waiting for a scan.
        return ConnectResult(state="connecting", qr=parse_qr(body))
    return ConnectResult(state=None, qr=None)


def parse_webhook(row: dict[str, Any]) -> WebhookConfig:
    headers = row.get("headers")
    events = row.get("events")
    return WebhookConfig(
        url=str(row.get("url") or ""),
        events=tuple(str(e) for e in events) if isinstance(events, list) else (),
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        by_events=bool(row.get("webhookByEvents", row.get("byEvents", False))),
        base64=bool(row.get("webhookBase64", row.get("base64", False))),
        enabled=bool(row.get("enabled", True)),
    )


def parse_instance_row(row: dict[str, Any]) -> InstanceInfo:
    return InstanceInfo(
        name=str(row.get("name", "")),
        id=str(row.get("id", "")),
        connection_status=str(row.get("connectionStatus", "unknown")),
        owner_jid=_opt_str(row.get("ownerJid")),
        profile_name=_opt_str(row.get("profileName")),
        number=_opt_str(row.get("number")),
        disconnection_reason_code=_opt_int(row.get("disconnectionReasonCode")),
        disconnection_at=_opt_str(row.get("disconnectionAt")),
    )


def webhook_body(config: WebhookConfig) -> dict[str, Any]:
    # Always an explicit events list: a missing one crashes the real server (§2.2).
    return {
        "enabled": config.enabled,
        "url": config.url,
        "byEvents": config.by_events,
        "base64": config.base64,
        "headers": dict(config.headers),
        "events": list(config.events),
    }


def decode_answer(method: str, path: str, response: httpx.Response) -> Any:
    """One answer's JSON body; Evolution's errors (a 4xx/5xx, a 200 with `error: true`,
    an answer that is not JSON) raised as the matching EvolutionError."""
    try:
        body: Any = response.json() if response.content else None
        valid_json = True
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json follows
        body, valid_json = None, False
    if response.status_code >= 400:
        raise error_for_status(
            response.status_code, body, method=method, path=path, reason=response.reason_phrase
        )
    if not valid_json:
        raise EvolutionServerError(
            [],
            status=response.status_code,
            method=method,
            path=path,
            reason="answer is not JSON",
        )
    if isinstance(body, dict) and body.get("error") is True:
        # connect/restart report failures as HTTP 200 {error: true, message} (§2.1).
        message = body.get("message")
        raise EvolutionServerError(
            [str(message)] if message is not None else [],
            status=response.status_code,
            method=method,
            path=path,
            reason="error reported in a 200 answer",
        )
    return body
