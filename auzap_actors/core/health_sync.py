"""What the health monitor must learn from a state-machine transition (pure).

The state machine hears webhooks and user actions; the health policy hears health checks.
Each transition may tell the policy something: the instance was seen open, the user acted,
or we stopped expecting the instance to be connected.
"""

from __future__ import annotations

from .health import HealthEvent, ReconnectAnswered, Stopped, UserActed
from .state import (
    AttentionRequired,
    ConnectRequested,
    Event,
    InstanceState,
    ReconnectRequested,
    Status,
)


def health_event_for(old: InstanceState, new: InstanceState, event: Event) -> HealthEvent | None:
    if isinstance(event, ConnectRequested):
        return UserActed()
    if new.status is old.status or isinstance(event, AttentionRequired | ReconnectRequested):
        return None
    if new.status is Status.OPEN:
        # Seen open (a webhook, a connect answer): judged like a passing check.
        return ReconnectAnswered(opened=True)
    if new.status in (Status.DISCONNECTED, Status.WAITING_QR):
        # Logged out, QR expired, or a new QR to scan: nothing to reconnect automatically.
        return Stopped()
    return None
