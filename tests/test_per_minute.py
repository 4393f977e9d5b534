"""The per-minute webhook ring behind `/admin/tree` `inbox.events_per_minute`: minutes roll
over, the window holds 30 minutes and no more, quiet minutes read as zeros, and `Metrics` feeds
it where it counts webhooks."""

from __future__ import annotations

from typing import Any

from auzap_actors.observability.metrics import Metrics
from auzap_actors.observability.per_minute import KINDS, PerMinute

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a minute's start


def _counts(series: list[dict[str, Any]], kind: str) -> list[int]:
    return [m[kind] for m in series]


def test_counts_land_in_their_minute_and_roll_over() -> None:
    ring = PerMinute()
    ring.add("accepted", T0 + 1)
    ring.add("accepted", T0 + 59.9)
    ring.add("duplicates", T0 + 30)
    ring.add("accepted", T0 + 60)  # the next minute
    ring.add("rejected", T0 + 61, n=3)
    series = ring.series(T0 + 90)
    assert len(series) == 30
    assert series[-1] == {
        "minute": "2027-01-15T08:01:00Z",
        "accepted": 1,
        "duplicates": 0,
        "rejected": 3,
    }
    assert series[-2] == {
        "minute": "2027-01-15T08:00:00Z",
        "accepted": 2,
        "duplicates": 1,
        "rejected": 0,
    }
    # Oldest first, one minute apart, ending with the current minute.
    assert series[0]["minute"] == "2027-01-15T07:32:00Z"
    assert sum(_counts(series, "accepted")[:-2]) == 0


def test_gaps_are_zeros_and_the_window_is_thirty_minutes() -> None:
    ring = PerMinute()
    for minute in (0, 5, 29):
        ring.add("accepted", T0 + minute * 60, n=minute + 1)
    series = ring.series(T0 + 29 * 60 + 5)
    assert _counts(series, "accepted") == [1] + [0] * 4 + [6] + [0] * 23 + [30]
    # One minute later the oldest minute has left the window: 30 entries, minute 0 gone.
    later = ring.series(T0 + 30 * 60)
    assert len(later) == 30
    assert _counts(later, "accepted") == [0] * 4 + [6] + [0] * 23 + [30, 0]
    # A count in minute 30 reuses minute 0's slot: the old count is dropped, not added to.
    ring.add("accepted", T0 + 30 * 60 + 1)
    assert _counts(ring.series(T0 + 30 * 60 + 2), "accepted")[-1] == 1
    # Quiet for an hour: every slot is stale, all zeros.
    assert all(m[k] == 0 for m in ring.series(T0 + 120 * 60) for k in KINDS)


def test_a_clock_stepping_back_out_of_the_window_loses_no_newer_count() -> None:
    ring = PerMinute(minutes=3)
    ring.add("accepted", T0 + 3 * 60)
    ring.add("accepted", T0)  # same slot, an older minute: ignored
    assert _counts(ring.series(T0 + 3 * 60), "accepted") == [0, 0, 1]


def test_metrics_feed_the_ring_where_webhooks_are_counted() -> None:
    now = [T0 + 10]
    metrics = Metrics(process=False, clock=lambda: now[0])
    metrics.webhook_accepted("messages.upsert", duplicate=False)
    metrics.webhook_accepted("messages.upsert", duplicate=True)
    metrics.webhook_rejected("bad_signature")
    now[0] += 60
    metrics.webhook_accepted("connection.update", duplicate=False)
    series = metrics.webhooks_by_minute()
    assert [(m["accepted"], m["duplicates"], m["rejected"]) for m in series[-2:]] == [
        (2, 1, 1),
        (1, 0, 0),
    ]
    # The Prometheus counters still count the same deliveries.
    assert metrics.webhooks_received.labels("messages.upsert")._value.get() == 2
