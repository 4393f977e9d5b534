"""How the state machine and the health policy keep each other informed (pure).

The state machine hears webhooks and user actions; the health policy hears health checks.
Each transition may tell the policy something: the instance was seen open, the user acted,
or we stopped expecting the instance to be connected.  The other way round, a check may
tell the state machine that the instance is open, or that an open one silently dropped.
"""

from __future__ import annotations

from .health import (
    CheckNotOpen,
    CheckOpen,
    HealthEvent,
    HealthState,
    ReconnectAnswered,
    Stopped,
    UserActed,
)
from .state import (
    AttentionRequired,
    ConnectRequested,
    Event,
    InstanceState,
    LogoutRequested,
    ReconnectRequested,
    ReportedConnecting,
    ReportedOpen,
    Status,
    ends_session,
)


def health_event_for(old: InstanceState, new: InstanceState, event: Event) -> HealthEvent | None:
    if isinstance(event, ConnectRequested):
        return UserActed()
    if _is_logout(event):
        # Whatever the status was: a session whose credentials are gone is never reconnected.
        return Stopped()
    if new.status is old.status or isinstance(event, AttentionRequired | ReconnectRequested):
        return None
    if new.status is Status.OPEN:
        # Seen open (a webhook, a connect answer): judged like a passing check.
        return ReconnectAnswered(opened=True)
    if new.status in (Status.DISCONNECTED, Status.WAITING_QR):
        # Logged out, QR expired, or a new QR to scan: nothing to reconnect automatically.
        return Stopped()
    return None


def _is_logout(event: Event) -> bool:
    return isinstance(event, LogoutRequested) or ends_session(event)


def state_event_for(check: HealthEvent, status: Status, health: HealthState) -> Event | None:
    """The state-machine event a check amounts to, given the status before it and the health
    after it: seen open, or a silent drop of an open instance (shown as connecting; the policy
    decides when to tell the user).  None when the check changes no status."""
    if isinstance(check, CheckOpen) and status is not Status.OPEN:
        return ReportedOpen()
    if isinstance(check, CheckNotOpen) and health.expect_open and status is Status.OPEN:
        return ReportedConnecting()
    return None
