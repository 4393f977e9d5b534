"""Restart intensity for supervised actors (OTP-style), as a pure decision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 5  # within window_s; one more crash parks the actor
    window_s: float = 60.0
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 5.0


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
    delay = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (len(recent) - 1))
    return RestartDecision(True, delay, recent)
