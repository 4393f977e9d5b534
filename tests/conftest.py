"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test
(cloned from a migrated template), the trio-asyncio loop, and the whole service started
in-process on ephemeral ports."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trio
import trio_asyncio

from auzap_actors.config import Settings, load_settings
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator
from auzap_actors.serve import Running, serve
from auzap_actors.store.embedded import EmbeddedPostgres

JWT_SECRET = "test-jwt-secret-" + "0123456789abcdef" * 4
WEBHOOK_SECRET = "test-webhook-secret-0123456789ab"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SIM_API_KEY = "test-evolution-api-key"
# One template per test session: two sessions may share the embedded server.
TEMPLATE_DB = f"auzap_template_{os.getpid()}"


def _with_database(dsn: str, name: str) -> str:
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}?{query}" if query else f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """An embedded PostgreSQL for the whole session (its DSN points at `postgres`)."""
    external = os.environ.get("AUZAP_TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = Path(tempfile.gettempdir()) / "auzap-test-pg"
    root.mkdir(exist_ok=True)
    server = EmbeddedPostgres(root)
    dsn = server.start()
    try:
        trio_asyncio.run(_build_template, dsn)
        yield dsn
    finally:
        trio_asyncio.run(_drop_template, dsn)
        server.stop()


async def _build_template(dsn: str) -> None:
    from auzap_actors.store.db import open_pool
    from auzap_actors.store.migrate import migrate

    admin = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
    try:
        await trio_asyncio.aio_as_trio(admin.execute)(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await trio_asyncio.aio_as_trio(admin.execute)(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await trio_asyncio.aio_as_trio(admin.close)()
    async with open_pool(_with_database(dsn, TEMPLATE_DB), min_size=1, max_size=1) as pool:
        await migrate(pool)


async def _drop_template(dsn: str) -> None:
    admin = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
    try:
        await trio_asyncio.aio_as_trio(admin.execute)(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
    finally:
        await trio_asyncio.aio_as_trio(admin.close)()


@pytest.fixture
async def aio_loop() -> AsyncIterator[Any]:
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture
async def database_url(pg_dsn: str, aio_loop: Any) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    try:
        await trio_asyncio.aio_as_trio(admin.execute)(
            f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"
        )
        yield _with_database(pg_dsn, name)
    finally:
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(admin.execute)(
                f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )
            await trio_asyncio.aio_as_trio(admin.close)()


def make_settings(database_url: str, tmp_path: Path, **overrides: str) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "AUZAP_DATA_DIR": str(tmp_path / "data"),
        "AUZAP_JWT_SECRET": JWT_SECRET,
        "AUZAP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AUZAP_ADMIN_TOKEN": ADMIN_TOKEN,
        "EVOLUTION_API_KEY": SIM_API_KEY,
        # Not a server: ServiceRunner.start points this at its simulator.
        "EVOLUTION_API_URL": "http://evolution.invalid:8080",
        "AUZAP_PORT": "0",
        # A periodic check compares our state with the simulator's at a random moment, and
        # many tests forge webhooks the simulator knows nothing of: checks once a day (the
        # longest interval) keep them out of those tests.  The health tests set their own.
        "AUZAP_HEALTH_INTERVAL_S": "86400",
    }
    env.update(overrides)
    return load_settings(env)


class ServiceRunner:
    """Starts and stops the service inside a test's nursery.

    The service talks to an Evolution simulator over real HTTP, as in production: the runner's
    own (started at the first `start`, kept across restarts of the service, like a real
    Evolution server), unless the test passes EVOLUTION_API_URL.  `demo=True` runs demo mode
    instead (its in-process simulator, a demo login), on the test's database."""

    def __init__(self, nursery: trio.Nursery, database_url: str, tmp_path: Path) -> None:
        self.nursery = nursery
        self.database_url = database_url
        self.tmp_path = tmp_path
        self._stop: trio.Event | None = None
        self._done: trio.Event | None = None
        self._simulator_url: str | None = None

    async def simulator(self) -> str:
        """The runner's Evolution simulator (started on first use)."""
        if self._simulator_url is None:
            config = SimulatorConfig(
                api_key=SIM_API_KEY, webhook_retry_initial_s=1.0, webhook_retry_max_s=30.0
            )
            self._simulator_url = await self.nursery.start(serve_simulator, config)
        return self._simulator_url

    async def start(self, *, demo: bool = False, **overrides: str) -> Running:
        if "EVOLUTION_API_URL" not in overrides and not demo:
            overrides["EVOLUTION_API_URL"] = await self.simulator()
        settings = make_settings(self.database_url, self.tmp_path, **overrides)
        if demo:
            # Demo mode refuses a real DATABASE_URL (tested in test_config.py); the demo page
            # is tested here on the test's database all the same.
            settings = dataclasses.replace(settings, demo=True, evolution_api_url=None)
        stop, done = trio.Event(), trio.Event()
        self._stop, self._done = stop, done

        async def run(*, task_status: trio.TaskStatus[Running]) -> None:
            try:
                await serve(settings, shutdown_trigger=stop.wait, task_status=task_status)
            finally:
                done.set()

        running: Running = await self.nursery.start(run)
        if running.simulator_url is None:
            running = dataclasses.replace(running, simulator_url=settings.evolution_api_url)
        return running

    async def stop(self) -> None:
        if self._stop is not None and self._done is not None:
            self._stop.set()
            await self._done.wait()
            self._stop = self._done = None


@pytest.fixture
async def runner(database_url: str, tmp_path: Path) -> AsyncIterator[ServiceRunner]:
    async with trio.open_nursery() as nursery:
        runner = ServiceRunner(nursery, database_url, tmp_path)
        yield runner
        await runner.stop()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def control(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's REST and control API; a module using it defines its own `sim_url`
    (the simulator configured for its tests)."""
    async with httpx.AsyncClient(base_url=sim_url) as http:
        yield http
