"""The inbox writer's one connection to PostgreSQL (see `inbox_writer.py`).

It is opened with the writer's own server settings (its `application_name`, and a
`statement_timeout`), every statement is timed on our side too, a little longer than on the
server's (a TCP link that went silent cannot hold the webhooks until the kernel gives up), and a
connection that failed is forgotten at once.  It counts what the writer's reconnect policy
reads: the failures in a row, the connections made, and when the last attempt began.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .db import DirectConnection
from .faults import is_transient

log = logging.getLogger(__name__)

# How much longer than the server's statement_timeout we wait before cutting the link ourselves:
# a server that answers reports its own timeout (57014) first.
_CLIENT_TIMEOUT_MARGIN_S = 1.0


def describe(exc: BaseException) -> str:
    # trio's TooSlowError and a bare TimeoutError carry no message: the type is the news.
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class InboxLink:
    """The writer's connection, or none between a failure and the next attempt."""

    def __init__(self, dsn: str, *, statement_timeout_s: float, connect_timeout_s: float) -> None:
        self._dsn = dsn
        self._statement_timeout_s = statement_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: DirectConnection | None = None
        self._in_flight = False  # a statement is on the wire: a cancelled one leaves no clean link
        self.failures = 0  # connections lost (or not made) since the last success
        self.connects = 0
        self.last_attempt = float("-inf")

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def connect(self) -> None:
        self.last_attempt = trio.current_time()
        settings = {
            "application_name": "auzap-inbox-writer",
            "statement_timeout": str(int(self._statement_timeout_s * 1000)),
        }
        self._conn = await DirectConnection.open(
            self._dsn, timeout_s=self._connect_timeout_s, server_settings=settings
        )
        self.connects += 1
        if self.failures:
            log.info("inbox writer reconnected after %d failed attempt(s)", self.failures)

    def lost(self, exc: Exception) -> None:
        """Forget a connection that failed; the caller decides when to make a new one."""
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        self._in_flight = False
        self.failures += 1
        if is_transient(exc):
            log.warning(
                "inbox writer: connection failed (%d in a row): %s", self.failures, describe(exc)
            )
        else:
            log.error("inbox writer failed; reconnecting", exc_info=exc)

    def _connection(self) -> DirectConnection:
        if self._conn is None:
            raise RuntimeError("the inbox writer has no connection")  # a bug: callers connect
        return self._conn

    async def query(self, query: str, *args: Any) -> list[Any]:
        conn = self._connection()
        self._in_flight = True
        with trio.fail_after(self._statement_timeout_s + _CLIENT_TIMEOUT_MARGIN_S):
            try:
                rows = await conn.fetch(query, *args)
            except Exception:
                self._in_flight = False  # an error is an answer too; a timeout leaves it set
                raise
        self._in_flight = False
        return rows

    async def close(self) -> None:
        """Close the connection, if any; abort it when a statement is on the wire."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self._in_flight:
                conn.abort()
            else:
                await conn.close()
