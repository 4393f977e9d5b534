"""The stateful shell around the pure breaker in :mod:`auzap_actors.core.breaker`.

It owns the clock and the current :class:`BreakerState` for ONE Evolution base URL.
All methods are synchronous and never await, so under trio no other task can run
between reading and replacing the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from ..core import breaker as core
from ..core.breaker import BreakerConfig, BreakerState
from .errors import EvolutionCircuitOpen

__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker"]

log = logging.getLogger(__name__)


def _without_credentials(url: str) -> str:
    # The URL ends up in logs, /admin/tree and error messages that may reach a browser:
    # a "user:password@" part must not.
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


class CircuitBreaker:
    """Fail fast while the Evolution server at ``base_url`` looks down.

    ``clock`` returns seconds on a monotonic scale; the default, ``trio.current_time``,
    needs a running trio loop (and follows trio's mock clocks in tests).
    """

    def __init__(
        self,
        base_url: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.base_url = _without_credentials(base_url.rstrip("/"))
        self.config = BreakerConfig() if config is None else config
        self._clock = clock
        self._state = BreakerState()

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self, *, method: str = "", path: str = "") -> bool:
        """Raise :class:`EvolutionCircuitOpen` if no call may be sent now.

        Returns True when this call is the half-open probe: its outcome must then be
        reported (``record_success``, ``record_failure`` or ``record_abandoned``),
        or the breaker keeps refusing every call.
        """
        now = self._clock()
        self._state, allowed = core.allow(self._state, self.config, now)
        if not allowed:
            raise EvolutionCircuitOpen(
                self.base_url,
                retry_after_s=core.retry_after(self._state, self.config, now),
                probing=self._state.status == "half_open",
                method=method,
                path=path,
            )
        probe = self._state.status == "half_open"
        if probe:
            log.info("circuit to %s half-open: sending one probe request", self.base_url)
        return probe

    def record_success(self) -> None:
        before = self._state.status
        self._state = core.record_success(self._state, self.config, self._clock())
        if before != "closed" and self._state.status == "closed":
            log.warning("circuit to %s closed: Evolution answers again", self.base_url)

    def record_failure(self) -> None:
        before = self._state.status
        self._state = core.record_failure(self._state, self.config, self._clock())
        if before != "open" and self._state.status == "open":
            if before == "half_open":
                why = "the probe failed"
            else:
                why = f"{self.config.failures} failures within {self.config.window_s:g} s"
            log.warning(
                "circuit to %s opened (%s); next probe in %.1f s",
                self.base_url,
                why,
                self.config.reset_s,
            )

    def record_abandoned(self) -> None:
        """The probe ended without an answer (cancelled, or a bug): let another probe."""
        self._state = core.record_abandoned(self._state, self.config, self._clock())

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON for /readyz and /admin/tree; ``opened_at`` is on the breaker's clock."""
        now = self._clock()
        state = self._state
        return {
            "status": state.status,
            "failures_in_window": core.failures_in_window(state, self.config, now),
            "opened_at": state.opened_at,
            "retry_after_s": round(core.retry_after(state, self.config, now), 3),
            "opened_count": state.opened_count,
        }

    def __repr__(self) -> str:
        state = self._state
        try:
            now: float | None = self._clock()
        except RuntimeError:  # trio.current_time outside a trio run (a debugger, a log)
            now = None
        if state.status == "closed":
            count = (
                len(state.failures)
                if now is None
                else core.failures_in_window(state, self.config, now)
            )
            detail = f"closed {count}/{self.config.failures} failures"
        elif state.status == "open":
            if now is None:
                detail = f"open since {state.opened_at}"
            else:
                wait = core.retry_after(state, self.config, now)
                detail = f"open, next probe in {wait:.1f} s"
        else:
            detail = "half_open, probe in flight" if state.probe_in_flight else "half_open"
        return f"<CircuitBreaker {self.base_url} {detail}>"
