"""Logs: one line per record, JSON in production and readable text in a terminal, each carrying
the correlation id of the work it belongs to, with secrets and tokens redacted.

Correlation.  An HTTP request gets an id (its sane `X-Request-Id`, else a new one; echoed in
the answer).  A webhook's inbox row keeps the id of the request that stored it, and the owning
actor binds it again while it applies that row; a call posted to an actor's mailbox carries the
caller's id in its letter and the actor binds it while handling that letter.  The id lives in a
`ContextVar`: trio gives every task a copy of its spawner's context, so it follows a request
into the tasks that request starts, and a binding made inside a task never leaks into another.
(Long-lived tasks spawned on a request's behalf, like an actor, clear it when they start.)

Redaction.  Every line goes through `Redactor.redact` after it is formatted (message, extra
fields and traceback alike): the configured secrets by value (the Evolution key, the webhook
secret, the admin and metrics tokens, the JWT secret), anything shaped like a JWT, Bearer
credentials, and the values of `apikey`/`token`/`secret`/`password`/`Authorization`-like
fields and query parameters.  The handler's filter also rewrites the record itself, so other
handlers attached after ours (pytest's capture) see the redacted text too.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "bind_correlation",
    "configure_logging",
    "current_correlation",
    "new_request_id",
    "sane_request_id",
    "set_correlation",
]

_correlation: ContextVar[str | None] = ContextVar("auzap_correlation_id", default=None)

# An incoming X-Request-Id is kept only when it is short and plain (it ends up in logs and in
# the inbox table): letters, digits and . _ : - only.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def sane_request_id(value: str | None) -> str | None:
    """`value` when it is fit to be a correlation id, else None."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return None


def current_correlation() -> str | None:
    return _correlation.get()


@contextmanager
def bind_correlation(value: str | None) -> Iterator[None]:
    """Within the block (and the tasks it starts), log lines carry `value`."""
    token = _correlation.set(value)
    try:
        yield
    finally:
        _correlation.reset(token)


def set_correlation(value: str | None) -> None:
    """Bind `value` for the rest of the current task (an HTTP request's own task)."""
    _correlation.set(value)


def clear_correlation() -> None:
    """For a long-lived task started on some request's behalf: its lines are its own."""
    _correlation.set(None)


_REDACTED = "[redacted]"
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# `name: value`, `name=value`, `"name": "value"`, `'name': 'value'` where the name says secret.
_FIELD = re.compile(
    r"""(?ix)
    (["']?\b(?:apikey|api[_-]?key|x-auzap-webhook-secret|authorization|jwt_key
        |[a-z_]*token|[a-z_]*secret|password|hash)\b["']?\s*[:=]\s*)
    (["']?)
    (?!\[redacted)(?!bearer\s)
    [^\s"',;&}\]]+
    """
)


class Redactor:
    """Removes secrets from log text: known values, JWTs, Bearer credentials, secret fields."""

    def __init__(self, secret_values: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted(
            {s for s in secret_values if s and len(s) >= 8}, key=len, reverse=True
        )

    def add(self, value: str | None) -> None:
        if value and len(value) >= 8 and value not in self._values:
            self._values = sorted([*self._values, value], key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, _REDACTED)
        text = _JWT.sub("[redacted-jwt]", text)
        text = _BEARER.sub(r"\1 " + _REDACTED, text)
        return _FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)


class _RecordFilter(logging.Filter):
    """Adds the correlation id to each record and rewrites its message redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _correlation.get()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it itself
            return True
        record.msg, record.args = self.redactor.redact(message), None
        return True


# Attributes every LogRecord has: what is left over came from `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "correlation_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, correlation_id, the record's
    `extra` fields, and exc (the traceback) when there is one."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation = getattr(record, "correlation_id", None)
        if correlation:
            line["correlation_id"] = correlation
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return self.redactor.redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """`time level logger [correlation]: message` for a person at a terminal."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(cid)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        correlation = getattr(record, "correlation_id", None)
        record.cid = f" [{correlation}]" if correlation else ""
        return self.redactor.redact(super().format(record))


def configure_logging(
    *,
    level: int = logging.INFO,
    fmt: str = "auto",
    secret_values: Iterable[str | None] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one that writes to `stream` (stderr): JSON lines
    for `fmt="json"`, text for `"text"`, and for `"auto"` text when the stream is a terminal,
    JSON otherwise.  Returns the handler (tests remove it again)."""
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    redactor = Redactor(secret_values)
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RecordFilter(redactor))
    formatter = JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_auzap", False):
            root.removeHandler(old)
    handler._auzap = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO, pgserver the whole initdb transcript: keep the log
    # about our service (embedded.py says when the database is ready).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return handler
