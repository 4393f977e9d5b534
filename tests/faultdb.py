"""A PostgreSQL server a test can break: stop it, start it, kill its sessions, make it read-only.

The shared embedded server (pgserver) cannot be stopped under a running test session, so fault
tests get their own cluster from the same binaries (`pgserver/pginstall/bin`).  `initdb` and
`postgres` refuse to run as root: as root, the cluster belongs to a dedicated system user and
every server command runs through `runuser`.  The server listens on 127.0.0.1 on a free port
(TCP, like a real deployment: a stopped server refuses connections, a unix socket would vanish).

Every method blocks: from trio, call them with `trio.to_thread.run_sync`.  SQL is run with the
cluster's own `psql`, so the control path shares nothing with the code under test.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

SERVER_USER = "auzapfaultpg"


def _bin_dir() -> Path:
    # Found, not imported: importing pgserver sets up its own state (and warns as root).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("the pgserver package (which ships PostgreSQL) is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _free_port() -> int:
    # The port is free now; the server binds it a moment later.  A race with another process
    # is possible in principle and shows as a failed start, not as a wrong result.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "-M", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )


class FaultPostgres:
    """One throw-away PostgreSQL cluster under the test's control.

    `dsn(db)` points at 127.0.0.1:`port`; `stop()` / `start()` return how long they took
    (also kept in `stop_s` / `start_s`); `close()` stops the server if it runs and deletes the
    cluster, whatever state a test left it in.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.bin = _bin_dir()
        self.root = Path(root or tempfile.mkdtemp(prefix="auzap-faultdb-"))
        self.pgdata = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = _free_port()
        self.stop_s: float | None = None
        self.start_s: float | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            _ensure_user(SERVER_USER)
            shutil.chown(self.root, SERVER_USER, SERVER_USER)

    def __repr__(self) -> str:
        return f"<FaultPostgres port={self.port} running={self.is_running()} root={self.root}>"

    # ---- the server ---------------------------------------------------------------------------

    def _server_cmd(self, *args: str) -> list[str]:
        if self._as_root:
            return ["runuser", "-u", SERVER_USER, "--", *args]
        return list(args)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._server_cmd(*args), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
                f"\n{self._log_tail()}"
            )
        return done

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-10:])
        except OSError:
            return ""

    def init(self) -> None:
        """Create the cluster (trust authentication, user `postgres`) and start it."""
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()

    def start(self) -> float:
        started = time.perf_counter()
        # fsync off: a test cluster is thrown away, and the machine is shared.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )
        self.start_s = time.perf_counter() - started
        return self.start_s

    def stop(self) -> float:
        """Fast shutdown: sessions are terminated (57P01), then the server exits."""
        started = time.perf_counter()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        self.stop_s = time.perf_counter() - started
        return self.stop_s

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        done = subprocess.run(
            self._server_cmd(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "status"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode == 0

    def close(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        try:
            if self.is_running():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- SQL ----------------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run one statement with psql; its output, unaligned, without headers."""
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(dbname),
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, dbname: str) -> None:
        self.sql(f'CREATE DATABASE "{dbname}"')

    def terminate_backends(self, dbname: str) -> int:
        """pg_terminate_backend every session on `dbname` but ours; how many were ended."""
        out = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
        )
        return int(out)

    def set_read_only(self, dbname: str, on: bool) -> int:
        """Make `dbname` refuse writes (25006) or accept them again.

        The setting applies to new sessions only, so the current ones are terminated; returns
        how many were."""
        value = "on" if on else "off"
        self.sql(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = {value}')
        return self.terminate_backends(dbname)


@pytest.fixture(name="fault_postgres")
def fault_postgres_fixture() -> Iterator[FaultPostgres]:
    """A fresh, running cluster for one test; gone afterwards even if the test stopped it.

    Import it into a test module (`from .faultdb import fault_postgres_fixture  # noqa: F401`)
    and ask for `fault_postgres`."""
    server = FaultPostgres()
    try:
        server.init()
        yield server
    finally:
        server.close()


DB = "auzap"


@pytest.fixture(name="fault_db")
async def fault_db_fixture(fault_postgres: FaultPostgres, aio_loop: Any) -> str:
    """The DSN of database `DB`, migrated, on the breakable server."""
    from auzap_actors.store.db import open_pool
    from auzap_actors.store.migrate import migrate

    await trio.to_thread.run_sync(fault_postgres.create_database, DB)
    dsn = fault_postgres.dsn(DB)
    async with open_pool(dsn, min_size=1, max_size=1) as pool:
        await migrate(pool)
    return dsn
