"""The SQLSTATE classifier (store/faults.py) over real asyncpg exception classes: built the way
asyncpg builds them from a server's error fields, and triggered for real against PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio
from asyncpg.exceptions import _base as asyncpg_base

from auzap_actors.store.faults import backoff_delay, is_data_error, is_transient, sqlstate


def server_error(code: str) -> BaseException:
    """The exception asyncpg raises when the server sends this SQLSTATE."""
    exc: BaseException = asyncpg.PostgresError.new({"C": code, "M": f"error {code}", "S": "ERROR"})
    return exc


TRANSIENT_CODES = [
    "08000",  # connection_exception
    "08003",  # connection_does_not_exist
    "08006",  # connection_failure
    "08001",  # sqlclient_unable_to_establish_sqlconnection
    "08P01",  # protocol_violation
    "53000",  # insufficient_resources
    "53100",  # disk_full
    "53200",  # out_of_memory
    "53300",  # too_many_connections
    "57000",  # operator_intervention
    "57014",  # query_canceled (statement_timeout)
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "57P05",  # idle_session_timeout (unknown to asyncpg: UnknownPostgresError)
    "58000",  # system_error
    "58030",  # io_error
    "25006",  # read_only_sql_transaction
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
]
DATA_CODES = [
    "22000",  # data_exception (also asyncpg's own "invalid input for query argument")
    "22001",  # string_data_right_truncation
    "22003",  # numeric_value_out_of_range
    "22021",  # character_not_in_repertoire
    "22P02",  # invalid_text_representation (jsonb refusing NaN)
    "22P05",  # untranslatable_character
    "23000",  # integrity_constraint_violation
    "23502",  # not_null_violation
    "23505",  # unique_violation
    "23514",  # check_violation
    "54000",  # program_limit_exceeded (index row too large)
    "54001",  # statement_too_complex
]
NEITHER_CODES = [
    "42P01",  # undefined_table: our schema, not the event
    "42501",  # insufficient_privilege
    "42601",  # syntax_error
    "0A000",  # feature_not_supported
    "25001",  # active_sql_transaction
    "25P02",  # in_failed_sql_transaction
    "28P01",  # invalid_password
    "3D000",  # invalid_catalog_name (the database does not exist)
    "40002",  # transaction_integrity_constraint_violation
    "55000",  # object_not_in_prerequisite_state
    "55006",  # object_in_use
    "XX000",  # internal_error
]


@pytest.mark.parametrize("code", TRANSIENT_CODES)
def test_transient_sqlstates(code: str) -> None:
    exc = server_error(code)
    assert isinstance(exc, asyncpg.PostgresError)
    assert sqlstate(exc) == code
    assert is_transient(exc)
    assert not is_data_error(exc)


@pytest.mark.parametrize("code", DATA_CODES)
def test_data_sqlstates(code: str) -> None:
    exc = server_error(code)
    assert is_data_error(exc)
    assert not is_transient(exc)


@pytest.mark.parametrize("code", NEITHER_CODES)
def test_other_sqlstates_are_neither(code: str) -> None:
    exc = server_error(code)
    assert not is_transient(exc)
    assert not is_data_error(exc)


def test_asyncpg_classes_by_name() -> None:
    assert is_transient(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert is_transient(asyncpg.ConnectionFailureError("x"))
    assert is_transient(asyncpg.AdminShutdownError("terminating connection"))
    assert is_transient(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert is_transient(asyncpg.TooManyConnectionsError("x"))
    assert is_transient(asyncpg.ReadOnlySQLTransactionError("x"))
    assert is_transient(asyncpg.SerializationError("x"))
    assert is_transient(asyncpg.DeadlockDetectedError("x"))
    assert is_transient(asyncpg.LockNotAvailableError("x"))
    assert is_data_error(asyncpg.InvalidTextRepresentationError("x"))
    assert is_data_error(asyncpg.UniqueViolationError("x"))
    assert is_data_error(asyncpg.ProgramLimitExceededError("x"))
    assert not is_transient(asyncpg.UndefinedTableError("x"))


def test_client_side_errors() -> None:
    assert is_transient(asyncpg.InterfaceError("connection is closed"))
    assert is_transient(asyncpg.InterfaceError("cannot perform operation: another operation"))
    assert is_transient(asyncpg_base.ProtocolError("unexpected message"))
    assert is_transient(asyncpg_base.TargetServerAttributeNotMatched("no primary"))
    # Raised by asyncpg's pool when a connection dies under a release (seen in the outage test).
    assert is_transient(
        asyncpg_base.InternalClientError(
            "PoolConnectionHolder.release() called on a free connection holder"
        )
    )
    # Configuration and misuse are not cured by waiting.
    assert not is_transient(asyncpg_base.ClientConfigurationError("bad dsn"))
    assert not is_transient(asyncpg_base.UnsupportedClientFeatureError("x"))
    assert not is_transient(asyncpg_base.UnsupportedServerFeatureError("x"))
    assert not is_transient(asyncpg_base.OutdatedSchemaCacheError("x"))
    client_data = asyncpg_base.DataError("invalid input")
    assert is_data_error(client_data) and not is_transient(client_data)


def test_os_errors_and_timeouts() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        BrokenPipeError(32, "broken pipe"),
        FileNotFoundError(2, "no unix socket"),  # a stopped server's socket file is gone
        OSError(113, "no route to host"),
        TimeoutError(),  # asyncpg's connect timeout (asyncio.TimeoutError is this one)
        trio.TooSlowError(),
    ):
        assert is_transient(exc), exc
        assert not is_data_error(exc), exc


def test_other_exceptions_are_neither() -> None:
    for exc in (ValueError("x"), TypeError("x"), KeyError("x"), RuntimeError("x")):
        assert not is_transient(exc)
        assert not is_data_error(exc)
        assert sqlstate(exc) is None


def test_exception_groups() -> None:
    lost = ExceptionGroup("g", [OSError("a"), asyncpg.AdminShutdownError("b")])
    assert is_transient(lost)
    assert not is_transient(ExceptionGroup("g", [OSError("a"), ValueError("bug")]))


def test_backoff_delay() -> None:
    delays = [backoff_delay(n, base_s=0.1, cap_s=2.0, sample=0.0) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff_delay(3, base_s=0.1, cap_s=2.0, jitter=0.25, sample=0.999) < 0.4 * 1.25
    assert backoff_delay(10_000, base_s=0.1, cap_s=2.0, sample=0.5) == pytest.approx(2.25)
    for _ in range(100):
        assert 2.0 <= backoff_delay(50, base_s=0.1, cap_s=2.0) < 2.5
    with pytest.raises(ValueError):
        backoff_delay(0, base_s=0.1, cap_s=2.0)
    with pytest.raises(ValueError):
        backoff_delay(1, base_s=0.1, cap_s=2.0, sample=1.0)


# ---- triggered for real ------------------------------------------------------------------------


async def _raised(conn: Any, query: str, *args: Any) -> BaseException:
    try:
        await trio_asyncio.aio_as_trio(conn.fetch)(query, *args)
    except Exception as exc:
        return exc
    raise AssertionError(f"{query!r} did not fail")


async def test_real_server_errors(pg_dsn: str, aio_loop: Any) -> None:
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    try:
        nan = await _raised(conn, "SELECT $1::jsonb", '{"n": NaN}')
        assert sqlstate(nan) == "22P02" and is_data_error(nan) and not is_transient(nan)

        # asyncpg's own refusal of an argument it cannot encode.
        surrogate = await _raised(conn, "SELECT $1::text", "a\udc80")
        assert is_data_error(surrogate) and not is_transient(surrogate)

        await trio_asyncio.aio_as_trio(conn.execute)(
            "CREATE TEMP TABLE faults_probe (k text PRIMARY KEY)"
        )
        await trio_asyncio.aio_as_trio(conn.execute)("INSERT INTO faults_probe VALUES ('a')")
        unique = await _raised(conn, "INSERT INTO faults_probe VALUES ('a')")
        assert sqlstate(unique) == "23505" and is_data_error(unique)

        # A key too large for a btree entry: random text does not compress under the limit.
        too_big = await _raised(
            conn,
            "INSERT INTO faults_probe SELECT string_agg(md5(random()::text), '')"
            " FROM generate_series(1, 200)",
        )
        assert sqlstate(too_big) == "54000" and is_data_error(too_big)

        await trio_asyncio.aio_as_trio(conn.execute)("BEGIN READ ONLY")
        read_only = await _raised(conn, "CREATE TABLE faults_never (a int)")
        await trio_asyncio.aio_as_trio(conn.execute)("ROLLBACK")
        assert sqlstate(read_only) == "25006" and is_transient(read_only)

        await trio_asyncio.aio_as_trio(conn.execute)("SET statement_timeout = 20")
        cancelled = await _raised(conn, "SELECT pg_sleep(2)")
        assert sqlstate(cancelled) == "57014" and is_transient(cancelled)

        missing = await _raised(conn, "SELECT * FROM faults_no_such_table")
        assert sqlstate(missing) == "42P01"
        assert not is_transient(missing) and not is_data_error(missing)
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def test_real_connection_losses(pg_dsn: str, aio_loop: Any) -> None:
    victim = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    killer = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    try:
        pid = victim.get_server_pid()
        await trio_asyncio.aio_as_trio(killer.execute)("SELECT pg_terminate_backend($1)", pid)
        await trio.sleep(0.2)  # let the FATAL 57P01 and the EOF reach the victim
        gone = await _raised(victim, "SELECT 1")
        assert isinstance(gone, asyncpg.InterfaceError | asyncpg.PostgresError), repr(gone)
        assert is_transient(gone), repr(gone)
    finally:
        await trio_asyncio.aio_as_trio(killer.close)()
        victim.terminate()

    closed = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    await trio_asyncio.aio_as_trio(closed.close)()
    not_open = await _raised(closed, "SELECT 1")
    assert isinstance(not_open, asyncpg.InterfaceError) and is_transient(not_open)

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        await trio_asyncio.aio_as_trio(asyncpg.connect)(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=2
        )
    except Exception as exc:
        refused: BaseException = exc
    else:
        raise AssertionError("connected to a closed port")
    assert isinstance(refused, OSError) and is_transient(refused)

    with pytest.raises(trio.TooSlowError) as slow:
        with trio.fail_after(0.05):
            # A statement that does not answer: an asyncio wait across the bridge.
            await trio_asyncio.aio_as_trio(asyncio.sleep)(1)
    assert is_transient(slow.value)
