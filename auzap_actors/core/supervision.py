"""Restart intensity for supervised actors (OTP-style), as pure decisions.

A crash (a bug) is restarted with a growing delay until `max_restarts` crashes fall within
`window_s`; then the actor is parked.  Parked is not forever: it is revived after a cool-down
that grows with each parking (`park_delay`).  A dependency that is not there (the database
restarting) is not a crash at all: the actor waits (`outage_delay`) and its budget is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backoff import backoff_delay, capped_doubling


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 5  # within window_s; one more crash parks the actor
    window_s: float = 60.0
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 5.0
    park_base_s: float = 30.0  # the first parking's cool-down, doubled by each one after
    park_cap_s: float = 600.0
    outage_base_s: float = 0.2  # waiting for the database: first retry, doubled, capped
    outage_cap_s: float = 2.0


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    delay_s: float
    history: tuple[float, ...]  # crash times still inside the window, newest last


def decide_restart(
    history: tuple[float, ...], now: float, policy: RestartPolicy
) -> RestartDecision:
    """After a crash at `now`: restart after a delay, or park (restart=False)."""
    recent = (*(t for t in history if now - t < policy.window_s), now)
    if len(recent) > policy.max_restarts:
        return RestartDecision(False, 0.0, recent)
    delay = capped_doubling(len(recent), policy.backoff_base_s, policy.backoff_cap_s)
    return RestartDecision(True, delay, recent)


def park_delay(parkings: int, policy: RestartPolicy) -> float:
    """The cool-down before a parked actor is revived, after its `parkings`-th parking
    (30 s, 1 min, 2 min ... 10 min with the defaults)."""
    return capped_doubling(parkings, policy.park_base_s, policy.park_cap_s)


def outage_delay(failures: int, policy: RestartPolicy, jitter_sample: float) -> float:
    """Before the `failures`-th retry of an actor waiting for the database; jittered by up to a
    quarter so that a node's actors do not all come back in the same instant."""
    return backoff_delay(
        failures,
        base_s=policy.outage_base_s,
        cap_s=policy.outage_cap_s,
        jitter=0.25,
        jitter_sample=jitter_sample,
    )
