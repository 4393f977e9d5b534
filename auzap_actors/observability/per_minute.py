"""Webhook deliveries per wall-clock minute over the last half hour, for the operators'
dashboard (`/admin/tree` `inbox.events_per_minute`).

Prometheus keeps totals; a dashboard without a Prometheus server behind it still wants "how many
per minute lately".  A fixed ring of one slot per minute, each slot tagged with the minute it
counts: a slot whose tag is not the minute asked for is a gap (a quiet minute, or one the ring
has rolled past) and reads as zeros, so nothing has to run when minutes pass.  Owned by the
service's `Metrics`, never process-global.
"""

from __future__ import annotations

from typing import Any

from ..core.views import iso

KINDS = ("accepted", "duplicates", "rejected")
WINDOW_MINUTES = 30


class PerMinute:
    """Counts of `KINDS` per minute for the last `minutes` minutes (the current one included)."""

    __slots__ = ("_counts", "_tags", "minutes")

    def __init__(self, minutes: int = WINDOW_MINUTES) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.minutes = minutes
        self._tags = [-1] * minutes  # the minute (epoch // 60) each slot counts; -1: never used
        self._counts = [[0] * len(KINDS) for _ in range(minutes)]

    def __repr__(self) -> str:
        return f"<PerMinute minutes={self.minutes}>"

    def add(self, kind: str, at: float, n: int = 1) -> None:
        """Count `n` of `kind` at the epoch second `at`."""
        k = KINDS.index(kind)
        minute = int(at // 60)
        slot = minute % self.minutes
        tag = self._tags[slot]
        if tag > minute:
            return  # the clock stepped back past the window: that minute is gone already
        if tag != minute:
            self._tags[slot] = minute
            self._counts[slot] = [0] * len(KINDS)
        self._counts[slot][k] += n

    def series(self, now: float) -> list[dict[str, Any]]:
        """One entry per minute, oldest first, ending with the current minute; quiet minutes
        are zeros. Each: `minute` (its start, ISO 8601 UTC) and a count per kind."""
        current = int(now // 60)
        out = []
        for minute in range(current - self.minutes + 1, current + 1):
            slot = minute % self.minutes
            counts = self._counts[slot] if self._tags[slot] == minute else [0] * len(KINDS)
            out.append({"minute": iso(minute * 60.0), **dict(zip(KINDS, counts, strict=True))})
        return out
