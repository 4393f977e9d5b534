"""Errors every layer may raise and the front must answer, named here so that the front needs
no import of the layer that raised them."""

from __future__ import annotations


class UpstreamError(Exception):
    """A dependency (Evolution) refused or failed a call: the front answers 502."""


class UpstreamUnavailable(UpstreamError):
    """A dependency cannot be reached now (transport error, circuit open): 503 + Retry-After."""


class BadCursor(ValueError):
    """A pagination cursor this API did not issue: 400."""
