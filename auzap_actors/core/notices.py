"""What users read in `notification` frames about their instance's health (the state
machine's own notifications are in `core.state`)."""

from __future__ import annotations

from typing import Any

from .state import Notify


def notification_frame(note: Notify) -> dict[str, Any]:
    """Data of the `notification` WebSocket frame (CONTRACT §4)."""
    return {
        "level": note.level,
        "title": note.title,
        "message": note.message,
        "action": note.action,
    }


def alert_notice(failures: int) -> Notify:
    return Notify(
        "warning",
        "WhatsApp connection problem",
        f"WhatsApp failed {failures} health checks in a row; it will be reconnected"
        " automatically if it does not come back.",
        action="reconnect",
    )


def reconnecting_notice(attempt: int) -> Notify:
    return Notify(
        "info",
        "Reconnecting WhatsApp",
        f"Reconnecting automatically (attempt {attempt}).",
        action="reconnect",
    )


def reconnect_failed_notice(next_in_s: float) -> Notify:
    return Notify(
        "warning",
        "Reconnect failed",
        f"WhatsApp did not come back; the next try is in {next_in_s:.0f} s.",
        action="reconnect",
    )


RECONNECTED = Notify(
    "info", "WhatsApp reconnected", "WhatsApp is connected again.", action="reconnect"
)
SCAN_AGAIN = Notify(
    "warning",
    "Scan the QR code again",
    "WhatsApp lost its session; scan the new QR code to reconnect.",
    kind="qr_expired",
)
