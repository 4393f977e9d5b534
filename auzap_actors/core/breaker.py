"""A circuit breaker as pure functions over frozen data: no I/O, no clock reads.

Every function takes the current time ``now`` (any monotonic clock, in seconds) and
returns the new state; the caller (``evolution.breaker.CircuitBreaker``) owns the
clock and keeps the state. One breaker guards one Evolution base URL.

Rules
-----

Three statuses: ``closed``, ``open``, ``half_open``.

closed
    Every call is allowed. ``record_failure`` adds ``now`` to ``failures`` and drops
    the failures that are ``window_s`` or more older than ``now``; when ``failures``
    (or more) are left, the breaker goes ``open`` (``opened_at = now``, failures
    cleared, ``opened_count + 1``). ``record_success`` changes nothing: failures
    expire by age, not because one call got through (a sliding window, not a streak).

open
    No call is allowed until ``reset_s`` has passed since ``opened_at``. The first
    ``allow`` after that moves to ``half_open`` and lets exactly that call through
    as the probe (``probe_in_flight = True``). Outcomes reported while open come from
    calls sent before it opened and change nothing: a stale success must not close
    it, a stale failure must not postpone the probe.

half_open
    While the probe is in flight every other call is refused. The probe's
    ``record_success`` closes the breaker (failures cleared);
    ``record_failure`` opens it again (``opened_at = now``, ``opened_count + 1``).
    ``record_abandoned`` (the probe was cancelled, or failed with a bug that says
    nothing about the server) frees the slot so that the next ``allow`` probes,
    instead of leaving the breaker refusing every call forever.

``retry_after`` is how long a refused caller should wait: 0 when closed or when a
half-open probe may start now; the rest of ``reset_s`` when open; and ``reset_s``
while a probe is in flight (it is the wait if that probe fails, the earliest moment
another probe could start).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "BreakerStatus",
    "allow",
    "failures_in_window",
    "record_abandoned",
    "record_failure",
    "record_success",
    "retry_after",
]

BreakerStatus = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: int = 5  # failures within window_s that open it
    window_s: float = 60.0
    reset_s: float = 30.0  # time open before one half-open probe

    def __post_init__(self) -> None:
        # A breaker that opens on zero failures, or never lets old ones expire, is a
        # configuration mistake better caught at start-up than in an outage.
        if self.failures < 1:
            raise ValueError(f"failures must be >= 1, not {self.failures}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, not {self.window_s}")
        if self.reset_s < 0:
            raise ValueError(f"reset_s must be >= 0, not {self.reset_s}")


@dataclass(frozen=True, slots=True)
class BreakerState:
    status: BreakerStatus = "closed"
    failures: tuple[float, ...] = ()  # failure times inside the window (closed only)
    opened_at: float | None = None
    probe_in_flight: bool = False
    opened_count: int = 0  # how many times it opened (for metrics)


def _recent(failures: tuple[float, ...], config: BreakerConfig, now: float) -> tuple[float, ...]:
    return tuple(t for t in failures if now - t < config.window_s)


def _open(state: BreakerState, now: float) -> BreakerState:
    return BreakerState(
        status="open",
        failures=(),
        opened_at=now,
        probe_in_flight=False,
        opened_count=state.opened_count + 1,
    )


def _probe_due(state: BreakerState, config: BreakerConfig, now: float) -> bool:
    # opened_at is always set while open; treat a missing one as "due" rather than
    # refusing forever.
    return state.opened_at is None or now - state.opened_at >= config.reset_s


def allow(state: BreakerState, config: BreakerConfig, now: float) -> tuple[BreakerState, bool]:
    """May a call be sent now? Returns the new state and the answer.

    A True answer in ``half_open`` makes that call the probe: its outcome must be
    reported with ``record_success``, ``record_failure`` or ``record_abandoned``.
    """
    if state.status == "closed":
        return state, True
    if state.status == "open":
        if not _probe_due(state, config, now):
            return state, False
        return replace(state, status="half_open", probe_in_flight=True), True
    if state.probe_in_flight:
        return state, False
    return replace(state, probe_in_flight=True), True


def record_success(state: BreakerState, config: BreakerConfig, now: float) -> BreakerState:
    """A call got an answer from a live server."""
    if state.status == "half_open":
        return BreakerState(status="closed", opened_count=state.opened_count)
    return state


def record_failure(state: BreakerState, config: BreakerConfig, now: float) -> BreakerState:
    """A call found the server unreachable (transport error, timeout, 502/503/504)."""
    if state.status == "closed":
        failures = (*_recent(state.failures, config, now), now)
        if len(failures) >= config.failures:
            return _open(state, now)
        return replace(state, failures=failures)
    if state.status == "half_open":
        return _open(state, now)
    return state


def record_abandoned(state: BreakerState, config: BreakerConfig, now: float) -> BreakerState:
    """An allowed call ended without telling anything about the server."""
    if state.status == "half_open":
        return replace(state, probe_in_flight=False)
    return state


def retry_after(state: BreakerState, config: BreakerConfig, now: float) -> float:
    """Seconds until a probe would be allowed (0 when closed)."""
    if state.status == "closed":
        return 0.0
    if state.status == "open":
        if state.opened_at is None:
            return 0.0
        return max(0.0, state.opened_at + config.reset_s - now)
    return config.reset_s if state.probe_in_flight else 0.0


def failures_in_window(state: BreakerState, config: BreakerConfig, now: float) -> int:
    """How many recorded failures still count at ``now`` (always 0 unless closed)."""
    return len(_recent(state.failures, config, now))
