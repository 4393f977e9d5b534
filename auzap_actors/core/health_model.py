"""The vocabulary of the health policy (pure data and arithmetic, no I/O): its settings, the
state it keeps per instance, the events it hears, the decisions it makes, and its delays.
The transition, with the rules, is in ``core.health``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .backoff import backoff_delay, check_jitter_sample
from .state import LOGGED_OUT_REASONS

MAX_ISSUES = 10


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    interval_s: float = 60.0
    alert_threshold: int = 2
    max_failures: int = 3
    auto_reconnect: bool = True
    reconnect_base_s: float = 5.0
    reconnect_cap_s: float = 300.0
    jitter: float = 0.2  # delay multiplied by (1 + jitter * sample), sample in [0, 1)
    stable_after_s: float = 600.0  # healthy this long -> reconnect attempt counter resets
    max_reconnects: int = 5  # automatic attempts in a row before needs_attention

    def __post_init__(self) -> None:
        # Caught at start-up rather than as a reconnect storm or a monitor that never alerts.
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, not {self.interval_s}")
        if self.alert_threshold < 1:
            raise ValueError(f"alert_threshold must be >= 1, not {self.alert_threshold}")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, not {self.max_failures}")
        if not self.reconnect_base_s > 0:
            raise ValueError(f"reconnect_base_s must be > 0, not {self.reconnect_base_s}")
        if not self.reconnect_cap_s >= self.reconnect_base_s:
            raise ValueError(
                f"reconnect_cap_s must be >= reconnect_base_s ({self.reconnect_base_s}),"
                f" not {self.reconnect_cap_s}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], not {self.jitter}")
        if not self.stable_after_s >= 0:
            raise ValueError(f"stable_after_s must be >= 0, not {self.stable_after_s}")
        if self.max_reconnects < 1:
            raise ValueError(f"max_reconnects must be >= 1, not {self.max_reconnects}")

    @property
    def max_reconnect_delay_s(self) -> float:
        """The longest delay ``reconnect_delay`` can return: cap x (1 + jitter)."""
        return self.reconnect_cap_s * (1 + self.jitter)


HealthStatus = Literal["healthy", "unhealthy", "disconnected", "error"]


@dataclass(frozen=True, slots=True)
class HealthState:
    status: HealthStatus = "disconnected"
    consecutive_failures: int = 0
    last_check_at: float | None = None
    healthy_since: float | None = None  # uptime = now - healthy_since while healthy
    issues: tuple[str, ...] = ()  # human sentences, newest last, at most MAX_ISSUES
    alerted: bool = False  # the alert of this failure streak was sent
    reconnect_attempts: int = 0  # automatic attempts since the last stable period
    reconnect_due_at: float | None = None  # when the next automatic reconnect may start
    reconnecting: bool = False  # an automatic reconnect is in progress
    gave_up: bool = False  # needs_attention: no automatic tries
    expect_open: bool = True  # False after a logout or Stopped, until seen open again


# ---- events (check outcomes and what the actor did) ----------------------------------------


@dataclass(frozen=True, slots=True)
class CheckOpen:
    """Evolution says open (fetchInstances agrees)."""


@dataclass(frozen=True, slots=True)
class CheckNotOpen:
    """``close``/``connecting``/``unknown`` while the instance is expected open."""

    state: str
    reason_code: int | None = None


@dataclass(frozen=True, slots=True)
class CheckLoggedOut:
    """``close`` with 401/402/403/406: final, the credentials are gone."""

    reason_code: int


@dataclass(frozen=True, slots=True)
class EvolutionUnreachable:
    """The breaker is open or the check hit a transport error: says nothing of the instance."""

    detail: str


@dataclass(frozen=True, slots=True)
class ReconnectStarted:
    """The actor began an automatic reconnect (after a ``Reconnect`` decision)."""


@dataclass(frozen=True, slots=True)
class ReconnectAnswered:
    """Evolution's answer to the reconnect call: open at once, or not yet."""

    opened: bool


@dataclass(frozen=True, slots=True)
class UserActed:
    """The user clicked connect, or an operator restarted the instance."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """The instance is no longer expected to be connected (logout asked, waiting for QR...)."""


HealthEvent = (
    CheckOpen
    | CheckNotOpen
    | CheckLoggedOut
    | EvolutionUnreachable
    | ReconnectStarted
    | ReconnectAnswered
    | UserActed
    | Stopped
)

# ---- decisions (what the actor must do) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """Warn the user: ``failures`` failed checks in a row."""

    failures: int


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Start automatic reconnect number ``attempt`` now (report it with ReconnectStarted)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The instance is open again after automatic reconnect number ``attempt``."""

    attempt: int


@dataclass(frozen=True, slots=True)
class ReconnectFailed:
    """The instance did not come back; next try in ``next_in_s`` s (None: a GiveUp follows)."""

    attempt: int
    next_in_s: float | None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No more automatic tries: the instance needs attention."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session was logged out: disconnected, one clear notification, no reconnects."""

    reason_code: int


Decision = Alert | Reconnect | Reconnected | ReconnectFailed | GiveUp | SessionEnded


# ---- delays ---------------------------------------------------------------------------------


def reconnect_delay(attempt: int, policy: HealthPolicy, jitter_sample: float) -> float:
    """Seconds to wait before automatic reconnect number ``attempt`` (>= 1):
    ``min(cap, base * 2^(attempt - 1)) * (1 + jitter * sample)``.

    Raises ValueError for an attempt below 1 or a sample outside [0, 1).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, not {attempt}")
    return backoff_delay(
        attempt,
        base_s=policy.reconnect_base_s,
        cap_s=policy.reconnect_cap_s,
        jitter=policy.jitter,
        jitter_sample=jitter_sample,
    )


def next_check_delay(policy: HealthPolicy, jitter_sample: float) -> float:
    """Seconds until the next health check: ``interval * (1 + jitter * (sample - 0.5))``,
    spread around the interval so that instances started together do not check together.

    Raises ValueError for a sample outside [0, 1).
    """
    check_jitter_sample(jitter_sample)
    return policy.interval_s * (1 + policy.jitter * (jitter_sample - 0.5))


def uptime(state: HealthState, now: float) -> float | None:
    """Seconds the instance has been continuously healthy, or None when it is not healthy."""
    if state.status != "healthy" or state.healthy_since is None:
        return None
    return max(0.0, now - state.healthy_since)


def check_outcome(connection_state: str, reason_code: int | None = None) -> HealthEvent:
    """The event for an answer of Evolution (``connectionState``, or ``connectionStatus`` and
    ``disconnectionReasonCode`` of ``fetchInstances``)."""
    if connection_state == "open":
        return CheckOpen()
    if connection_state == "close" and reason_code in LOGGED_OUT_REASONS:
        assert reason_code is not None
        return CheckLoggedOut(reason_code)
    return CheckNotOpen(connection_state, reason_code)
