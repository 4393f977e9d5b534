"""What a database error means for the caller: one classifier for the whole service.

Two questions matter when a statement fails:

- `is_transient`: is the database merely not there right now (restarting, failing over,
  unreachable, out of connections, read-only for a moment)?  Then the work is retried later and
  a webhook is answered 503, which Evolution re-delivers.
- `is_data_error`: does PostgreSQL refuse *this value* (SQLSTATE classes 22, 23, 54)?  Then the
  same input will fail every time; only then may a webhook be answered 400, which Evolution never
  re-delivers: the event is gone.

Anything else (a missing table, a permission, a bug of ours) is neither: the caller reports it
as unavailable (the event stays with Evolution) and logs it loudly.  Both functions are pure over
the exception's type and attributes; they never look at messages, which are localised.
"""

from __future__ import annotations

import random

import asyncpg
import trio
from asyncpg.exceptions import _base as asyncpg_base

from ..core.backoff import backoff_delay as core_backoff_delay

# SQLSTATE classes and codes meaning "not now": connection exception (08), insufficient
# resources (53), operator intervention (57: admin shutdown, crash shutdown, cannot connect now,
# query canceled by a statement timeout), system error (58), plus the single codes below.
TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
TRANSIENT_CODES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a standby, or a primary being demoted
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
    }
)
# Data exception (22), integrity constraint violation (23), program limit exceeded (54: a value
# too large for an index row, a too-deep document): the value itself cannot be stored.
DATA_CLASSES = frozenset({"22", "23", "54"})

# asyncpg reports an argument it cannot encode (a lone surrogate, a str for an int) as a
# PostgresError with SQLSTATE 22000.  It also defines a client-side DataError, an InterfaceError:
# about the value too, so a data error, never mistaken for a lost connection.
_CLIENT_DATA_ERROR: type[BaseException] = asyncpg_base.DataError
# InterfaceErrors that come from how the client is configured or used, not from the link, and
# a schema changed under a prepared statement: waiting does not cure them.
_CLIENT_MISUSE: tuple[type[BaseException], ...] = (
    asyncpg_base.ClientConfigurationError,
    asyncpg_base.UnsupportedClientFeatureError,
    asyncpg_base.UnsupportedServerFeatureError,
    asyncpg_base.OutdatedSchemaCacheError,
    _CLIENT_DATA_ERROR,
)
# asyncpg's client errors that a fresh connection cures: a protocol desynchronisation,
# `target_session_attrs` finding no primary during a failover, and its internal state errors,
# which it raises when a connection dies under a query or a release ("release() called on a
# free connection holder", "cannot switch to state …: another operation is in progress": both
# seen here with the server's sessions terminated mid-query).
_CLIENT_LINK_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg_base.ProtocolError,
    asyncpg_base.TargetServerAttributeNotMatched,
    asyncpg_base.InternalClientError,
)


def sqlstate(exc: BaseException) -> str | None:
    """The five-character SQLSTATE of a PostgreSQL error, else None."""
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def is_transient(exc: BaseException) -> bool:
    """True when the database is not there right now and the same work may succeed later.

    Covers OS-level failures (refused, reset, unreachable, a missing unix socket; `TimeoutError`
    is an OSError), asyncpg's `InterfaceError` such as "connection is closed" or "another
    operation is in progress" (a connection left unusable), its connection errors (SQLSTATE 08),
    trio timeouts (`TooSlowError`, from a statement or an acquire), and the SQLSTATEs listed in
    TRANSIENT_CLASSES and TRANSIENT_CODES.  An exception group is transient when every exception
    in it is.
    """
    if isinstance(exc, BaseExceptionGroup):
        return all(is_transient(e) for e in exc.exceptions)
    if isinstance(exc, asyncpg.PostgresError):
        code = sqlstate(exc)
        return code is not None and (code[:2] in TRANSIENT_CLASSES or code in TRANSIENT_CODES)
    if isinstance(exc, _CLIENT_MISUSE):
        return False
    return isinstance(
        exc, (OSError, trio.TooSlowError, asyncpg.InterfaceError, *_CLIENT_LINK_ERRORS)
    )


def is_data_error(exc: BaseException) -> bool:
    """True when PostgreSQL (or asyncpg's encoder) refuses the value itself: storing the same
    input again can never succeed."""
    if isinstance(exc, _CLIENT_DATA_ERROR):
        return True
    code = sqlstate(exc)
    return code is not None and code[:2] in DATA_CLASSES


def backoff_delay(
    failures: int, *, base_s: float, cap_s: float, jitter: float = 0.25, sample: float | None = None
) -> float:
    """Seconds to wait after `failures` consecutive failures (1 for the first):
    ``min(cap, base * 2^(failures - 1)) * (1 + jitter * sample)``, sample in [0, 1).

    The jitter keeps several nodes that lost the same database from reconnecting in lockstep;
    `sample` is drawn at random unless given (tests give it): the arithmetic is the core's."""
    return core_backoff_delay(
        failures,
        base_s=base_s,
        cap_s=cap_s,
        jitter=jitter,
        jitter_sample=random.random() if sample is None else sample,
    )
