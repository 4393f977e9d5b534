"""Errors every layer may raise and the front must answer, named here so that the front needs
no import of the layer that raised them."""

from __future__ import annotations


class UpstreamError(Exception):
    """A dependency (Evolution) refused or failed a call: the front answers 502.

    `str()` is for operators' logs (it may name hosts and paths); `user_message` is what a
    user may read."""

    user_message = "Evolution API refused the request."


class UpstreamUnavailable(UpstreamError):
    """A dependency cannot be reached now (transport error, circuit open): 503 + Retry-After."""

    user_message = "Evolution API is unavailable right now; retry shortly."


class BadCursor(ValueError):
    """A pagination cursor this API did not issue: 400."""


def root_cause(exc: BaseException) -> BaseException:
    """The one exception inside the exception groups trio (and trio-asyncio) wrap a task's
    failure in; a group of several is returned as it is."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
