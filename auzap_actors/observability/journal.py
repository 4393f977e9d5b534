"""The recent history of each instance, in memory: its last health checks and its last calls to
Evolution, for `GET /admin/instances/<name>`.

Nothing here is persisted (a restart of the service starts empty; the health that matters is
persisted with the instance).  Both rings are bounded per instance, and the number of instances
remembered is bounded too: the least recently written is forgotten first, and a deleted instance
is forgotten at once.  Measured with tracemalloc: 10,000 instances with full rings (20 + 20
entries) hold about 60 MB, 6 KB per instance.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

HEALTH_RING = 20
CALL_RING = 20


@dataclass(frozen=True, slots=True)
class HealthCheck:
    at: float  # epoch seconds
    purpose: str  # periodic, boot, reconcile
    result: str  # open, not_open, missing, unreachable, refused
    observed: str | None  # Evolution's connection state, when it answered
    health: str  # the instance's health status after the check
    consecutive_failures: int
    source: str = "evolution"  # or "census": one fetchInstances of every instance answered

    def view(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "purpose": self.purpose,
            "result": self.result,
            "observed": self.observed,
            "health": self.health,
            "consecutive_failures": self.consecutive_failures,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class EvolutionCall:
    """One call through the Evolution client (its retries included).  Never the apikey: the
    path is the route's template, the instance is named apart."""

    at: float  # epoch seconds when the call ended
    method: str
    endpoint: str  # path template: /instance/connect/{instance}
    outcome: str  # ok, or the error's kind (unavailable, circuit_open, not_found, ...)
    status: int | None  # the last answer's HTTP status; None when none came
    duration_s: float
    attempts: int

    def view(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "endpoint": self.endpoint,
            "outcome": self.outcome,
            "status": self.status,
            "duration_ms": round(self.duration_s * 1000, 2),
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class _Rings:
    checks: deque[HealthCheck] = field(default_factory=lambda: deque(maxlen=HEALTH_RING))
    calls: deque[EvolutionCall] = field(default_factory=lambda: deque(maxlen=CALL_RING))


class Journal:
    """Per-instance rings, owned by the running service."""

    def __init__(self, max_instances: int = 20_000) -> None:
        self.max_instances = max_instances
        self._rings: OrderedDict[str, _Rings] = OrderedDict()

    def __repr__(self) -> str:
        return f"<Journal instances={len(self._rings)}/{self.max_instances}>"

    def _of(self, name: str) -> _Rings:
        rings = self._rings.get(name)
        if rings is None:
            rings = self._rings[name] = _Rings()
            while len(self._rings) > self.max_instances:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(name)
        return rings

    def health_check(self, name: str, check: HealthCheck) -> None:
        self._of(name).checks.append(check)

    def evolution_call(self, name: str, call: EvolutionCall) -> None:
        self._of(name).calls.append(call)

    def forget(self, name: str) -> None:
        self._rings.pop(name, None)

    def health_history(self, name: str) -> list[dict[str, Any]]:
        """Oldest first."""
        rings = self._rings.get(name)
        return [c.view() for c in rings.checks] if rings else []

    def evolution_calls(self, name: str) -> list[dict[str, Any]]:
        """Oldest first."""
        rings = self._rings.get(name)
        return [c.view() for c in rings.calls] if rings else []
