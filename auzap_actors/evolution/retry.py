"""What the Evolution client retries, and how often (CONTRACT §1 ``AUZAP_RETRY_*``).

The waiting itself is stamina's (exponential, factor 2, with its random jitter);
this module only holds the policy numbers and the decision of which failures may be
repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import EvolutionUnavailable

__all__ = ["RetryPolicy", "should_retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first try; waits grow from ``initial_s`` by a factor of
    2 plus stamina's jitter, never above ``max_s``."""

    attempts: int = 3
    initial_s: float = 1.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {self.attempts}")
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"need 0 <= initial_s <= max_s, got initial_s={self.initial_s}, max_s={self.max_s}"
            )


def should_retry(exc: Exception, *, idempotent: bool) -> bool:
    """May the call that raised ``exc`` be sent again?

    Only "Evolution unreachable" failures are worth repeating; any other answer
    (400, 401, 403, 404, 500, ...) will be the same next time. A non-idempotent call
    (create, send, logout, delete) is repeated only when it certainly never reached
    the server: after a read timeout, a reset after sending or a 502/503/504 the
    server may have done it already, and doing it twice is worse than failing.
    An open circuit is never retried (``retryable`` is False): it fails fast on
    purpose until its probe time.
    """
    if not isinstance(exc, EvolutionUnavailable) or not exc.retryable:
        return False
    return idempotent or not exc.request_sent or exc.status == 503
