"""Immutable snapshots of an instance and their JSON views (CONTRACT §3, §4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .auto_reply import AutoReplyLimits, limits_view
from .health import HealthState, uptime
from .state import InstanceState, Status


@dataclass(frozen=True, slots=True)
class InstanceSnapshot:
    """What everybody outside the actor sees; replaced (never mutated) on each transition."""

    instance_name: str
    user_id: str | None
    organization_id: str | None
    state: InstanceState = field(default_factory=InstanceState)
    health: HealthState = field(default_factory=HealthState)
    auto_reply: bool = False
    auto_reply_prompt: str | None = None  # not in the InstanceView
    auto_reply_limits: AutoReplyLimits = field(default_factory=AutoReplyLimits)
    updated_at: float = 0.0  # epoch seconds
    # What the actor knows of Evolution's side (not shown to users):
    in_evolution: bool = False  # created (or adopted) there; False after Evolution's 404
    full_check_in: int = 0  # health checks until the next reads fetchInstances (0: this one)
    last_observed: str | None = None  # Evolution's last answer: open, connecting, close, missing
    deleted: bool = False  # the instance was deleted; its actor ends after answering


def encode_frame(frame_type: str, data: Any) -> str:
    """A WebSocket text frame of CONTRACT §4: `{"type": ..., "data": ...}`."""
    return json.dumps({"type": frame_type, "data": data}, separators=(",", ":"))


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def health_view(snapshot: InstanceSnapshot, now: float) -> dict[str, Any]:
    health = snapshot.health
    up = uptime(health, now) if snapshot.state.status is Status.OPEN else None
    return {
        "status": health.status,
        "consecutive_failures": health.consecutive_failures,
        "uptime_seconds": None if up is None else round(up, 3),
        "last_check_at": iso(health.last_check_at),
        "issues": list(health.issues),
    }


def instance_view(snapshot: InstanceSnapshot, now: float) -> dict[str, Any]:
    """InstanceView of CONTRACT §3."""
    state = snapshot.state
    return {
        "instance_name": snapshot.instance_name,
        "user_id": snapshot.user_id,
        "organization_id": snapshot.organization_id,
        "status": state.status.value,
        "is_connected": state.is_connected,
        "phone_number": state.phone_number,
        "qr_code": state.qr_code,
        "health": health_view(snapshot, now),
        "auto_reply": snapshot.auto_reply,
        **limits_view(snapshot.auto_reply_limits),
        "updated_at": iso(snapshot.updated_at),
    }


def status_frame(snapshot: InstanceSnapshot) -> dict[str, Any]:
    """Data of the `status` / `org.status` WebSocket frames."""
    state = snapshot.state
    return {
        "instance_name": snapshot.instance_name,
        "status": state.status.value,
        "is_connected": state.is_connected,
        "phone_number": state.phone_number,
    }


def tagged(data: Any, instance_name: str) -> Any:
    """A frame's data naming its instance (`instance_name`), so a page that shows several
    instances of one user can tell their frames apart; data that names it already, or is not
    an object, is left as it is."""
    if isinstance(data, dict) and "instance_name" not in data:
        return {**data, "instance_name": instance_name}
    return data


def qrcode_frame(snapshot: InstanceSnapshot) -> dict[str, Any]:
    return {
        "instanceName": snapshot.instance_name,
        "qrCode": snapshot.state.qr_code,
        "status": Status.WAITING_QR.value,
    }
