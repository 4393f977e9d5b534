"""What the Evolution client retries, and how often (CONTRACT §1 ``AUZAP_RETRY_*``).

The waiting itself is stamina's (exponential, factor 2, with its random jitter);
this module only holds the policy numbers and the decision of which failures may be
repeated.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import stamina

from .breaker import CircuitBreaker
from .errors import EvolutionCircuitOpen, EvolutionError, EvolutionUnavailable

__all__ = ["RetryPolicy", "retry_after", "should_retry"]


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


Send = Callable[[], Awaitable[tuple[Any, int]]]


async def retry_after(
    first: EvolutionError,
    send: Send,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    method: str,
    path: str,
    idempotent: bool,
    tally: list[int],
    log: logging.Logger,
) -> Any:
    """The attempts of a call after its first one (not a half-open probe) failed with
    ``first``, worth retrying: stamina's loop, which replays ``first`` as its own first attempt
    (not sent again), so the waits and the count of attempts are stamina's.  ``send`` makes
    one attempt: the decoded answer and its HTTP status.  The breaker is told the call's
    outcome, once; each retry is logged to ``log`` (the client's)."""
    body: Any = None
    last: EvolutionError | None = None
    probe = False
    try:
        async for attempt in stamina.retry_context(
            # The half-open probe is one request: if it fails the circuit reopens now,
            # rather than after the probe's own retries.  (Late binding is the point:
            # the predicate must see whether this attempt was the probe.)
            on=lambda exc: not probe and should_retry(exc, idempotent=idempotent),  # noqa: B023
            attempts=policy.attempts,
            timeout=None,  # attempts bound the loop; each attempt has its own timeout
            wait_initial=policy.initial_s,
            wait_max=policy.max_s,
            wait_exp_base=2,
        ):
            with attempt:
                tally[0] = attempt.num
                if attempt.num == 1:
                    last = first
                    raise first  # already sent, and failed: replayed, not sent again
                # str(last) names method, path and Evolution's message, never the key.
                log.warning(
                    "evolution %s %s: attempt %d of %d after: %s",
                    method,
                    path,
                    attempt.num,
                    policy.attempts,
                    last,
                )
                if not probe:
                    # Every attempt asks: a circuit that opened meanwhile ends the retries.
                    probe = breaker.allow(method=method, path=path)
                try:
                    body, tally[1] = await send()
                except EvolutionError as exc:
                    last = exc
                    raise
    except EvolutionCircuitOpen:
        raise
    except EvolutionUnavailable:
        # The breaker judges calls, not attempts: a call saved by a retry proves Evolution
        # reachable, so a flaky server does not trip it; one that failed after all its
        # attempts counts once.
        breaker.record_failure()
        raise
    except EvolutionError:
        # Any other answer (4xx, 500, a 200 quirk) came from a live server.
        breaker.record_success()
        raise
    except BaseException:
        if probe:
            breaker.record_abandoned()
        raise
    breaker.record_success()
    return body
