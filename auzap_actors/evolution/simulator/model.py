"""In-memory state of the Evolution simulator and the JSON shapes it answers with.

Plain data plus pure builders: no I/O except the optional state-file helpers, no
trio tasks (timers live on the instance as cancel scopes owned by ``core``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import segno
import trio

from ...core.events import ALLOWED_WEBHOOK_EVENTS

RECONNECT_CODES = frozenset({408, 411, 428, 440, 500, 503, 515})
LOGOUT_CODES = frozenset({401, 403})  # status.instance + logout.instance + creds wiped
FINAL_CODES = frozenset({402, 406})  # no reconnect, but not a logout either
DISCONNECT_CODES = RECONNECT_CODES | LOGOUT_CODES | FINAL_CODES
CLIENT_NAME = "evolution_exchange"
INTEGRATION = "WHATSAPP-BAILEYS"


@dataclass
class SimulatorConfig:
    api_key: str
    qr_interval_s: float = 45.0  # a new QR every interval while connecting (qrTimeout)
    qr_limit: int = 30  # QRCODE_LIMIT
    connect_wait_s: float = 0.0  # real Evolution waits 2 s in /instance/connect
    webhook_timeout_s: float = 30.0
    webhook_retry_attempts: int = 10  # incl. the first try
    webhook_retry_initial_s: float = 5.0
    webhook_retry_max_s: float = 300.0
    state_file: Path | None = None  # instances (not timers) survive a restart
    reconnect_delay_s: float = 1.0  # connecting -> open after a silent reconnect
    ack_delay_s: float = 0.2  # sendText -> SERVER_ACK -> DELIVERY_ACK spacing
    server_url: str | None = None  # envelope server_url; serve_simulator fills it in


class SimHTTPError(Exception):
    """An Evolution-shaped error answer ``{status, error, response: {message}}``."""

    REASONS = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        500: "Internal Server Error",
    }

    def __init__(self, status: int, messages: list[Any] | str) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = messages

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.REASONS.get(self.status, "Error"),
            "response": {"message": self.messages},
        }


def unauthorized() -> SimHTTPError:
    # The one error whose message is a string, not an array (facts §1).
    return SimHTTPError(401, "Unauthorized")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message_id() -> str:
    """An id like Baileys' generateMessageIDV2: ``3EB0`` + 16 upper-case hex."""
    return "3EB0" + secrets.token_hex(8).upper()


def new_inbound_id() -> str:
    """32 upper-case hex, the shape of ids sent by Android phones."""
    return secrets.token_hex(16).upper()


def new_row_id() -> str:
    # Prisma uses cuid() for Message/Webhook row ids: 25 chars starting with "c".
    return "c" + secrets.token_hex(12)


def device_from_id(message_id: str) -> str:
    """Baileys ``getDevice``: guess the sender's platform from the id format."""
    if len(message_id) == 20 and message_id.startswith("3A"):
        return "ios"
    if len(message_id) == 22 and message_id.startswith("3E"):
        return "web"
    if len(message_id) in (21, 32):
        return "android"
    if message_id.startswith("3F") or len(message_id) == 18:
        return "desktop"
    return "unknown"


def normalize_number(number: str) -> str:
    """A simplified ``createJid``: strip decoration, keep JIDs, detect group ids.

    Brazil/Mexico/Argentina prefix rewrites are left out; the simulator never
    talks to WhatsApp, so the digits are kept as given.
    """
    cleaned = number.replace(" ", "").replace("+", "").replace("(", "").replace(")", "")
    if "@" in cleaned:
        return cleaned
    if ("-" in cleaned and len(cleaned) >= 24) or (cleaned.isdigit() and len(cleaned) >= 18):
        return f"{cleaned}@g.us"
    return f"{cleaned}@s.whatsapp.net"


@dataclass
class QrState:
    count: int = 0
    code: str | None = None
    base64: str | None = None
    pairing_code: str | None = None

    def rest_object(self) -> dict[str, Any]:
        """The QR object of the REST answers; absent fields are dropped like JSON does
        with JS ``undefined``, so no QR yet gives ``{"count": 0}``."""
        if self.code is None:
            return {"count": self.count}
        return {
            "pairingCode": self.pairing_code,
            "code": self.code,
            "base64": self.base64,
            "count": self.count,
        }


def make_qr(pairing: bool) -> QrState:
    """A fresh QR: payload ``ref,noiseKey,identityKey,advSecret`` and its PNG data URL."""
    parts = [
        "2@" + base64.b64encode(secrets.token_bytes(48)).decode(),
        *(base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3)),
    ]
    code = ",".join(parts)
    alphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
    pairing_code = "".join(secrets.choice(alphabet) for _ in range(8)) if pairing else None
    return QrState(
        code=code, base64=segno.make(code).png_data_uri(scale=4), pairing_code=pairing_code
    )


@dataclass
class WebhookSettings:
    url: str
    enabled: bool
    events: list[str]
    headers: dict[str, str]
    by_events: bool = False
    base64: bool = False
    id: str = field(default_factory=new_row_id)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @classmethod
    def from_request(cls, body: dict[str, Any], *, force_enabled: bool) -> WebhookSettings:
        """Apply Evolution's storage rules: disabled -> no events; [] -> all events."""
        enabled = True if force_enabled else bool(body.get("enabled"))
        events = [str(e) for e in body.get("events") or []]
        if not enabled:
            events = []
        elif not events:
            events = list(ALLOWED_WEBHOOK_EVENTS)
        raw_headers = body.get("headers")
        headers = raw_headers if isinstance(raw_headers, dict) else {}
        return cls(
            url=str(body.get("url", "")),
            enabled=enabled,
            events=events,
            headers={str(k): str(v) for k, v in headers.items()},
            by_events=bool(body.get("byEvents", False)),
            base64=bool(body.get("base64", False)),
        )

    def row(self, instance_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "headers": self.headers,
            "enabled": self.enabled,
            "events": self.events,
            "webhookByEvents": self.by_events,
            "webhookBase64": self.base64,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "instanceId": instance_id,
        }


_PERSISTED = (
    "name",
    "id",
    "token",
    "state",
    "has_session",
    "owner_jid",
    "profile_name",
    "profile_pic_url",
    "number",
    "disconnection_reason_code",
    "disconnection_object",
    "disconnection_at",
    "created_at",
    "updated_at",
    "settings",
)


@dataclass(eq=False)
class Instance:
    """One Evolution instance. Mutable on purpose: it is the simulator's state."""

    name: str
    token: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "close"  # open | close | connecting
    has_session: bool = False  # "credentials": reconnects need no QR while True
    owner_jid: str | None = None
    profile_name: str | None = None
    profile_pic_url: str | None = None
    number: str | None = None
    disconnection_reason_code: int | None = None
    disconnection_object: str | None = None
    disconnection_at: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    settings: dict[str, Any] = field(default_factory=dict)
    webhook: WebhookSettings | None = None
    # Runtime only, never persisted.
    sender: str | None = None  # envelope ``sender``: set once connected in this process
    qr: QrState = field(default_factory=QrState)
    pairing: bool = False
    timer: trio.CancelScope | None = None  # QR cycle or pending reconnect
    tasks: set[trio.CancelScope] = field(default_factory=set)

    def touch(self) -> None:
        self.updated_at = now_iso()

    def fetch_row(self) -> dict[str, Any]:
        """The Prisma ``Instance`` row of ``/instance/fetchInstances`` (facts §2.5)."""
        return {
            "id": self.id,
            "name": self.name,
            "connectionStatus": self.state,
            "ownerJid": self.owner_jid,
            "profileName": self.profile_name,
            "profilePicUrl": self.profile_pic_url,
            "integration": INTEGRATION,
            "number": self.number,
            "businessId": None,
            "token": self.token,
            "clientName": CLIENT_NAME,
            "disconnectionReasonCode": self.disconnection_reason_code,
            "disconnectionObject": self.disconnection_object,
            "disconnectionAt": self.disconnection_at,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "Chatwoot": None,
            "Proxy": None,
            "Rabbitmq": None,
            "Nats": None,
            "Sqs": None,
            "Websocket": None,
            "Setting": {"id": new_row_id(), **self.settings, "instanceId": self.id},
            "_count": {"Message": 0, "Contact": 0, "Chat": 0},
        }

    def to_json(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in _PERSISTED}
        data["webhook"] = None
        if self.webhook is not None:
            data["webhook"] = {
                "url": self.webhook.url,
                "enabled": self.webhook.enabled,
                "events": self.webhook.events,
                "headers": self.webhook.headers,
                "by_events": self.webhook.by_events,
                "base64": self.webhook.base64,
                "id": self.webhook.id,
                "created_at": self.webhook.created_at,
                "updated_at": self.webhook.updated_at,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        inst = cls(**{key: data[key] for key in _PERSISTED if key in data})
        if isinstance(data.get("webhook"), dict):
            inst.webhook = WebhookSettings(**data["webhook"])
        # Timers are not saved: a QR cycle cannot resume, so "connecting" without a
        # session falls back to close; a session resumes as a plain reconnect target.
        if inst.state == "connecting":
            inst.state = "open" if inst.has_session else "close"
        if inst.state == "open":
            inst.sender = inst.owner_jid
        return inst


def default_settings() -> dict[str, Any]:
    return {
        "rejectCall": False,
        "msgCall": "",
        "groupsIgnore": False,
        "alwaysOnline": False,
        "readMessages": False,
        "readStatus": False,
        "syncFullHistory": False,
        "wavoipToken": "",
    }


def save_state(path: Path, instances: dict[str, Instance]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    payload = {"instances": [inst.to_json() for inst in instances.values()]}
    tmp.write_bytes(msgspec.json.encode(payload))  # ~10x faster than json.dumps
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Instance]:
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    instances = [Instance.from_json(item) for item in payload.get("instances", [])]
    return {inst.name: inst for inst in instances}
