"""The one capped exponential backoff of the service (pure: the caller draws the jitter sample).

Reconnects (`core.health_model`), restarts, parkings and database outages (`core.supervision`)
and the inbox writer's reconnects (`store.faults`) all wait `min(cap, base * 2^(n - 1))`,
stretched by `1 + jitter * sample`.
"""

from __future__ import annotations


def check_jitter_sample(jitter_sample: float) -> None:
    """Raises ValueError for a sample outside [0, 1)."""
    if not 0 <= jitter_sample < 1:
        raise ValueError(f"jitter_sample must be within [0, 1), not {jitter_sample}")


def capped_doubling(count: int, base_s: float, cap_s: float) -> float:
    """`min(cap, base * 2^(count - 1))` for the `count`-th wait (>= 1; ValueError below)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    # Past 2^62 the cap has long been reached; bounding the exponent avoids float overflow.
    return min(cap_s, base_s * 2.0 ** min(count - 1, 62))


def backoff_delay(
    count: int, *, base_s: float, cap_s: float, jitter: float, jitter_sample: float
) -> float:
    """The `count`-th wait: `capped_doubling(...) * (1 + jitter * jitter_sample)`, the sample in
    [0, 1) (ValueError outside)."""
    check_jitter_sample(jitter_sample)
    return capped_doubling(count, base_s, cap_s) * (1 + jitter * jitter_sample)
