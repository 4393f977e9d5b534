"""Exceptions raised by the Evolution client.

Evolution answers errors as ``{status, error, response: {message: array|string}}``
(facts §2.1). ``/instance/connect`` and ``/instance/restart`` instead catch their own
errors and answer HTTP 200 ``{error: true, message: "..."}``; that quirk is mapped to
:class:`EvolutionServerError`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from ..core.errors import UpstreamError, UpstreamUnavailable


class EvolutionError(UpstreamError):
    """Any failed call to Evolution.

    ``status`` is the HTTP status (None for transport errors), ``messages`` the
    ``response.message`` entries (objects rendered as compact JSON).
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        messages: list[str],
        *,
        status: int | None,
        method: str,
        path: str,
        reason: str | None = None,
    ) -> None:
        self.messages = messages
        self.status = status
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(self._sentence())
        if messages and not self.retryable and status is not None:
            # Evolution's own words ("number not on WhatsApp") help the user; hosts, paths and
            # transport errors stay in the operators' log.
            self.user_message = f"Evolution API refused the request: {'; '.join(messages)}"

    def _sentence(self) -> str:
        where = "unavailable" if self.status is None else str(self.status)
        detail = "; ".join(self.messages) or self.reason or "no details"
        return f"Evolution {self.method} {self.path} -> {where}: {detail}"

    def __str__(self) -> str:
        return self._sentence()


class EvolutionBadRequest(EvolutionError):
    """400: validation failed, instance not connected, number not on WhatsApp, ..."""


class EvolutionUnauthorized(EvolutionError):
    """401: missing or wrong ``apikey``."""


class EvolutionForbidden(EvolutionError):
    """403: e.g. the instance name is already in use."""


class EvolutionNotFound(EvolutionError):
    """404: unknown instance or route."""


class EvolutionServerError(EvolutionError):
    """500 and other non-gateway 5xx, plus the HTTP-200 ``{error: true}`` quirk."""


class EvolutionUnavailable(EvolutionError, UpstreamUnavailable):
    """Evolution could not be reached: transport errors, timeouts, 502/503/504.

    ``request_sent`` is False only when the request certainly never reached the
    server (a failed connect, no free connection, an open circuit): only then may a
    non-idempotent call be repeated without risking doing it twice.
    """

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        messages: list[str],
        *,
        status: int | None,
        method: str,
        path: str,
        reason: str | None = None,
        request_sent: bool = True,
    ) -> None:
        self.request_sent = request_sent
        super().__init__(messages, status=status, method=method, path=path, reason=reason)


class EvolutionCircuitOpen(EvolutionUnavailable):
    """The circuit breaker for this Evolution server is open: nothing was sent.

    Not retryable: the breaker only lets a probe through after ``retry_after_s``,
    so a retry loop that hits it stops at once instead of sleeping against it.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        base_url: str,
        *,
        retry_after_s: float,
        probing: bool = False,
        method: str = "",
        path: str = "",
    ) -> None:
        self.base_url = base_url
        self.retry_after_s = retry_after_s
        self.probing = probing  # half-open: another call is probing the server now
        super().__init__(
            [], status=None, method=method, path=path, reason="circuit open", request_sent=False
        )

    def _sentence(self) -> str:
        if self.probing:
            why = "circuit half-open; a probe request is in flight"
        else:
            why = f"circuit open; next probe in {self.retry_after_s:.1f} s"
        return f"Evolution API at {self.base_url} is unavailable ({why})"


_BY_STATUS: dict[int, type[EvolutionError]] = {
    400: EvolutionBadRequest,
    401: EvolutionUnauthorized,
    403: EvolutionForbidden,
    404: EvolutionNotFound,
    502: EvolutionUnavailable,
    503: EvolutionUnavailable,
    504: EvolutionUnavailable,
}


def render_message(item: Any) -> str:
    """A ``response.message`` entry as text; objects become compact JSON."""
    if isinstance(item, str):
        return item
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def parse_messages(body: Any) -> list[str]:
    """Extract the messages of an Evolution error body, whatever its exact shape."""
    if not isinstance(body, dict):
        return []
    response = body.get("response")
    raw: Any = response.get("message") if isinstance(response, dict) else body.get("message")
    if raw is None:
        return []
    if isinstance(raw, list):
        return [render_message(item) for item in raw]
    return [render_message(raw)]


def error_for_status(
    status: int, body: Any, *, method: str, path: str, reason: str | None = None
) -> EvolutionError:
    """Build the exception matching an HTTP error answer."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = EvolutionServerError if status >= 500 else EvolutionError
    return cls(parse_messages(body), status=status, method=method, path=path, reason=reason)


# The outcome label of a failed call (metrics, the per-instance journal): most specific first.
_OUTCOMES: tuple[tuple[type[EvolutionError], str], ...] = (
    (EvolutionCircuitOpen, "circuit_open"),
    (EvolutionUnavailable, "unavailable"),
    (EvolutionBadRequest, "bad_request"),
    (EvolutionUnauthorized, "unauthorized"),
    (EvolutionForbidden, "forbidden"),
    (EvolutionNotFound, "not_found"),
    (EvolutionServerError, "server_error"),
)


def outcome_of(exc: EvolutionError) -> str:
    """A bounded name for what went wrong with a call."""
    for cls, name in _OUTCOMES:
        if isinstance(exc, cls):
            return name
    return "client_error"
