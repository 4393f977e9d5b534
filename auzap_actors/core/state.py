"""The instance state machine: pure, no I/O, no clock reads.

Rules (read these before changing the table):

* Status is one of DISCONNECTED, CONNECTING, WAITING_QR, OPEN, NEEDS_ATTENTION.
* Every (status, event type) pair has exactly one target status in TRANSITIONS; there are no
  undefined pairs, because webhooks arrive late, twice and out of order and each must land
  somewhere.  `transition` raises `InvalidTransition` only for a pair missing from the table,
  which the tests prove cannot happen.
* A QR code is held only while WAITING_QR; `is_connected` is true only while OPEN.
* Effects are plain data the actor executes: Evolution calls and user notifications.
  Persisting and publishing the new state after every transition is the actor's job and is
  not listed as an effect.
* Notifications are emitted on *changes* only, so duplicated webhooks never notify twice.
* `sessionless` follows the session: seen open clears it, a logout (news or request) sets it.
  Evolution's news of a logout while it is set is stale; `core.instance.step` drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal


class Status(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    WAITING_QR = "waiting_qr"
    OPEN = "open"
    NEEDS_ATTENTION = "needs_attention"


@dataclass(frozen=True, slots=True)
class InstanceState:
    status: Status = Status.DISCONNECTED
    phone_number: str | None = None
    profile_name: str | None = None
    qr_code: str | None = None
    last_reason: int | None = None  # Baileys statusReason of the last close
    since: float | None = None  # monotonic-free "now" given by the caller when status changed
    # No WhatsApp session can exist: created by a connect, or logged out (or asked to be), and
    # not seen open since.  False when unknown (older rows, restored or adopted ones).
    sessionless: bool = False

    @property
    def is_connected(self) -> bool:
        return self.status is Status.OPEN


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The user (or an operator) asked to connect."""


@dataclass(frozen=True, slots=True)
class QrUpdated:
    qr_code: str


@dataclass(frozen=True, slots=True)
class QrExpired:
    """QR limit reached (`qrcode.updated` limit message or `connection.update` refused)."""


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    phone_number: str | None = None
    profile_name: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionConnecting:
    """Evolution is (re)connecting the socket; a silent drop shows only as this."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A final close: Evolution will not reconnect by itself."""

    reason: int | None = None


@dataclass(frozen=True, slots=True)
class LogoutRequested:
    """The user asked to log the WhatsApp session out."""


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """`logout.instance` / `remove.instance`: the session's credentials are gone."""


@dataclass(frozen=True, slots=True)
class ReportedOpen:
    """Evolution's connectionState (polled) says open."""


@dataclass(frozen=True, slots=True)
class ReportedConnecting:
    """Evolution's connectionState (polled) says connecting."""


@dataclass(frozen=True, slots=True)
class ReportedClosed:
    """Evolution's connectionState (polled) says close."""


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    """The health monitor starts an automatic reconnect (the actor makes the call)."""


@dataclass(frozen=True, slots=True)
class AttentionRequired:
    """Automatic recovery gave up; a human must act."""

    reason: str


Event = (
    ConnectRequested
    | QrUpdated
    | QrExpired
    | ConnectionOpened
    | ConnectionConnecting
    | ConnectionClosed
    | LogoutRequested
    | LoggedOut
    | ReportedOpen
    | ReportedConnecting
    | ReportedClosed
    | ReconnectRequested
    | AttentionRequired
)
EVENT_TYPES: tuple[type[Event], ...] = (
    ConnectRequested,
    QrUpdated,
    QrExpired,
    ConnectionOpened,
    ConnectionConnecting,
    ConnectionClosed,
    LogoutRequested,
    LoggedOut,
    ReportedOpen,
    ReportedConnecting,
    ReportedClosed,
    ReconnectRequested,
    AttentionRequired,
)

# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallConnect:
    """Ask Evolution for a connection (QR follows)."""


@dataclass(frozen=True, slots=True)
class CallLogout:
    """Ask Evolution to log the session out."""


NotifyKind = Literal["connected", "qr_expired", "closed", "logged_out", "attention"]


@dataclass(frozen=True, slots=True)
class Notify:
    level: Literal["info", "warning", "error"]
    title: str
    message: str
    action: Literal["reconnect"] | None = None
    kind: NotifyKind = "closed"  # lets the actor replace "connected" by "reconnected"


Effect = CallConnect | CallLogout | Notify


class InvalidTransition(Exception):
    def __init__(self, status: Status, event: Event) -> None:
        super().__init__(f"no transition from {status.value} on {type(event).__name__}")
        self.status = status
        self.event = event


# ---- the table ------------------------------------------------------------------------------

D, C, Q, O, A = (
    Status.DISCONNECTED,
    Status.CONNECTING,
    Status.WAITING_QR,
    Status.OPEN,
    Status.NEEDS_ATTENTION,
)

# TRANSITIONS[status][event type] -> next status.  Rows are states, columns are events.
TRANSITIONS: Mapping[Status, Mapping[type[Event], Status]] = {
    D: {
        ConnectRequested: C, QrUpdated: Q, QrExpired: D, ConnectionOpened: O,
        ConnectionConnecting: C, ConnectionClosed: D, LogoutRequested: D, LoggedOut: D,
        ReportedOpen: O, ReportedConnecting: C, ReportedClosed: D, ReconnectRequested: C,
        AttentionRequired: A,
    },
    C: {
        ConnectRequested: C, QrUpdated: Q, QrExpired: D, ConnectionOpened: O,
        ConnectionConnecting: C, ConnectionClosed: D, LogoutRequested: D, LoggedOut: D,
        ReportedOpen: O, ReportedConnecting: C, ReportedClosed: D, ReconnectRequested: C,
        AttentionRequired: A,
    },
    Q: {
        # Evolution reports `connecting` while a QR is shown: the QR stays.
        ConnectRequested: Q, QrUpdated: Q, QrExpired: D, ConnectionOpened: O,
        ConnectionConnecting: Q, ConnectionClosed: D, LogoutRequested: D, LoggedOut: D,
        ReportedOpen: O, ReportedConnecting: Q, ReportedClosed: D, ReconnectRequested: Q,
        AttentionRequired: A,
    },
    O: {
        # A late QR-expiry (stale webhook) must not knock an open session down.
        ConnectRequested: O, QrUpdated: Q, QrExpired: O, ConnectionOpened: O,
        ConnectionConnecting: C, ConnectionClosed: D, LogoutRequested: D, LoggedOut: D,
        ReportedOpen: O, ReportedConnecting: C, ReportedClosed: D, ReconnectRequested: C,
        AttentionRequired: A,
    },
    A: {
        # Only a human (connect/logout) or real news from Evolution leaves NEEDS_ATTENTION;
        # polled "close"/"connecting" and stale QR expiries keep it parked.
        ConnectRequested: C, QrUpdated: Q, QrExpired: A, ConnectionOpened: O,
        ConnectionConnecting: C, ConnectionClosed: A, LogoutRequested: D, LoggedOut: D,
        ReportedOpen: O, ReportedConnecting: A, ReportedClosed: A, ReconnectRequested: A,
        AttentionRequired: A,
    },
}  # fmt: skip

LOGGED_OUT_REASONS = frozenset({401, 403, 402, 406})


def ends_session(event: object) -> bool:
    """Evolution's news that a session's credentials are gone (`logout.instance`,
    `remove.instance`, a final close with a logged-out code), as opposed to the user's request."""
    if isinstance(event, LoggedOut):
        return True
    return isinstance(event, ConnectionClosed) and event.reason in LOGGED_OUT_REASONS


def _format_phone(phone: str | None) -> str:
    return f"+{phone}" if phone else "your phone"


def transition(
    state: InstanceState, event: Event, now: float
) -> tuple[InstanceState, tuple[Effect, ...]]:
    """Apply one event: the next state and the effects the actor must execute."""
    try:
        target = TRANSITIONS[state.status][type(event)]
    except KeyError:
        raise InvalidTransition(state.status, event) from None

    new = replace(state, status=target)
    if target is not Status.WAITING_QR:
        new = replace(new, qr_code=None)
    if target is not state.status:
        new = replace(new, since=now)
    if target is Status.OPEN:
        new = replace(new, sessionless=False)
    elif isinstance(event, LogoutRequested) or ends_session(event):
        new = replace(new, sessionless=True)
    effects: list[Effect] = []

    match event:
        case ConnectRequested():
            if target is Status.CONNECTING:
                effects.append(CallConnect())
        case QrUpdated(qr_code=qr):
            new = replace(new, qr_code=qr)
        case QrExpired():
            if state.status in (Status.CONNECTING, Status.WAITING_QR):
                effects.append(Notify("warning", "QR code expired", "QR expired, connect again."))
        case ConnectionOpened() | ReportedOpen():
            if isinstance(event, ConnectionOpened):
                new = replace(
                    new,
                    phone_number=event.phone_number or state.phone_number,
                    profile_name=event.profile_name or state.profile_name,
                )
            new = replace(new, last_reason=None)
            if state.status is not Status.OPEN:
                effects.append(
                    Notify(
                        "info",
                        "WhatsApp connected",
                        f"WhatsApp is connected as {_format_phone(new.phone_number)}.",
                        kind="connected",
                    )
                )
        case ConnectionClosed(reason=reason):
            new = replace(new, last_reason=reason)
            logged_out = reason in LOGGED_OUT_REASONS
            if logged_out:
                new = replace(new, phone_number=None, profile_name=None)
            if state.status is not target:
                effects.append(_closed_notification(logged_out))
        case LoggedOut():
            new = replace(new, phone_number=None, profile_name=None, last_reason=401)
            if state.status is not target:
                effects.append(_closed_notification(True))
        case ReportedClosed():
            if state.status is not target:
                effects.append(_closed_notification(False))
        case LogoutRequested():
            if state.status in (Status.OPEN, Status.CONNECTING, Status.WAITING_QR):
                effects.append(CallLogout())
            new = replace(new, phone_number=None, profile_name=None)
        case AttentionRequired(reason=reason):
            if state.status is not Status.NEEDS_ATTENTION:
                effects.append(
                    Notify(
                        "error",
                        "WhatsApp needs your attention",
                        reason,
                        action="reconnect",
                        kind="attention",
                    )
                )
        case ConnectionConnecting() | ReportedConnecting() | ReconnectRequested():
            pass
    return new, tuple(effects)


def _closed_notification(logged_out: bool) -> Notify:
    if logged_out:
        return Notify(
            "error",
            "WhatsApp disconnected",
            "This device was logged out of WhatsApp. Connect again and scan a new QR code.",
            kind="logged_out",
        )
    return Notify(
        "warning",
        "WhatsApp disconnected",
        "The WhatsApp connection was closed. Click Connect to reconnect.",
        action="reconnect",
    )


def state_diagram() -> str:
    """The transition table as a Mermaid state diagram (the docs' diagram is drawn from this)."""
    lines = ["stateDiagram-v2"]
    for source, row in TRANSITIONS.items():
        for event_type, target in row.items():
            if target is not source:
                lines.append(f"    {source.value} --> {target.value}: {event_type.__name__}")
    return "\n".join(lines)
