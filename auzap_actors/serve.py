"""The launcher: it owns the root.

`main` opens the trio-asyncio loop (triopg needs it), the embedded PostgreSQL when no
DATABASE_URL is given, the pool, the root nursery with the inbox writer, the Evolution
simulator (demo mode), the HTTP server, the supervisor tree, retention and the scheduled
backups.  SIGINT/SIGTERM stop HTTP first, then the actors, then the pool and the embedded
PostgreSQL.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig

from .actors.auto_reply import AutoReplyConfig, AutoReplyStats
from .actors.deps import ActorDeps
from .actors.facade import Actors
from .actors.hub import Hub
from .actors.supervisor import Supervisor
from .ai import OfflineResponder, OpenAIResponder, Responder
from .config import ConfigError, Settings, ToolSettings
from .core.breaker import BreakerConfig
from .core.errors import root_cause
from .core.health import HealthPolicy
from .evolution.breaker import CircuitBreaker
from .evolution.census import Census
from .evolution.client import EvolutionClient
from .evolution.retry import RetryPolicy
from .evolution.simulator import SimulatorConfig, serve_simulator
from .http_server import HttpLimits, serve_http
from .observability import logs
from .observability.metrics import Metrics
from .store.backups import BackupPolicy, run_backups
from .store.db import open_pool
from .store.doorbell import Doorbell
from .store.embedded import EmbeddedPostgres
from .store.inbox import InboxWriter
from .store.migrate import migrate
from .store.multi import USER_UNIQUE_INDEX, multi_instance_ready
from .store.retention import RetentionPolicy, run_retention
from .web.app import create_app
from .web.auth import mint_user_token
from .web.context import WebContext
from .web.demo import DEMO_USER_ID

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    """What a started service tells its starter (tests use it to find the ports)."""

    url: str
    simulator_url: str | None
    actors: Actors


@asynccontextmanager
async def database(settings: Settings | ToolSettings) -> AsyncIterator[str]:
    """The DSN to use: DATABASE_URL, or an embedded PostgreSQL stopped on exit."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    dsn = await trio.to_thread.run_sync(embedded.start)
    try:
        yield dsn
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(embedded.stop)


def _port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1].rstrip("/"))


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole service until `shutdown_trigger` returns (default: forever).

    Must run inside `trio_asyncio.open_loop()`.
    """
    trigger = shutdown_trigger or _never
    async with (
        database(settings) as dsn,
        open_pool(
            dsn,
            max_size=settings.db_pool_size,
            acquire_timeout_s=settings.db_acquire_timeout_s,
        ) as pool,
    ):
        applied = await migrate(pool)
        if applied:
            log.info("applied %d migration(s)", len(applied))
        if settings.max_instances_per_user > 1 and not await multi_instance_ready(pool):
            raise ConfigError(
                f"AUZAP_MAX_INSTANCES_PER_USER is {settings.max_instances_per_user}, but the"
                f" database still allows one instance per user ({USER_UNIQUE_INDEX}): run"
                " `auzap-actors migrate --multi-instance` first"
            )
        async with trio.open_nursery() as outer:
            simulator_url = None
            if settings.evolution_api_url is None:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                sim_config = SimulatorConfig(
                    api_key=settings.evolution_api_key,
                    state_file=settings.data_dir / "simulator.json",
                    webhook_retry_initial_s=1.0,
                    webhook_retry_max_s=30.0,
                )
                simulator_url = await outer.start(serve_simulator, sim_config, "127.0.0.1", 0)
            base_url = settings.evolution_api_url or simulator_url
            assert base_url is not None
            # The service's own metrics (and per-instance journal): never the process-global
            # default registry, several services may run in one process.
            metrics = Metrics()
            # The clients outlive the actors that use them: closed after `root` ends.
            responder = make_responder(settings)
            try:
                async with evolution_client(settings, base_url, metrics) as evolution:
                    await _run_root(
                        settings,
                        dsn,
                        pool,
                        evolution,
                        metrics,
                        responder,
                        simulator_url,
                        trigger,
                        task_status,
                    )
            finally:
                with trio.CancelScope(shield=True):
                    await responder.aclose()
            outer.cancel_scope.cancel()
    log.info("stopped")


def wall_clock() -> Callable[[], float]:
    """Epoch seconds that follow trio's clock: real time in production, virtual time under a
    test's MockClock (so uptimes and due times stay consistent with timers)."""
    offset = time.time() - trio.current_time()
    return lambda: offset + trio.current_time()


def retention_policy(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        inbox_days=settings.inbox_retention_days,
        failed_days=settings.inbox_failed_retention_days,
        interval_s=settings.retention_interval_s,
        # The first round comes shortly after start, after the boot's busiest minute.
        first_delay_s=min(60.0, settings.retention_interval_s),
    )


def backup_policy(settings: Settings) -> BackupPolicy:
    assert settings.backup_dir is not None
    return BackupPolicy(
        directory=settings.backup_dir,
        interval_s=settings.backup_interval_s,
        keep=settings.backup_retention.keep,
        days=settings.backup_retention.days,
        # Like retention: shortly after start, after the boot's busiest minute.
        first_delay_s=min(60.0, settings.backup_interval_s),
    )


def http_config(settings: Settings) -> HypercornConfig:
    """hypercorn's settings for the service's listener (the connection cap and the write
    timeout are `http_server`'s, hypercorn has neither)."""
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = 1.5
    config.accesslog = None
    # Our logging setup, not a second handler of hypercorn's own (each line printed twice).
    config.errorlog = logging.getLogger("hypercorn.error")
    # An idle keep-alive connection, or one that has not finished sending its request head,
    # is closed after this.
    config.keep_alive_timeout = settings.http_keep_alive_s
    # A connection on which the client sends nothing for this long is closed.  A client waits
    # silently for its answer, so this must outlast the slowest request (an actor call), and
    # a browser socket is kept alive by hypercorn's pings, which the browser answers: a client
    # that stopped answering them (gone, or not reading) is dropped.
    read_timeout = math.ceil(settings.http_read_timeout_s)
    config.read_timeout = read_timeout
    config.websocket_ping_interval = read_timeout / 3
    # Inbound WebSocket messages are pings of a few bytes (ws.MAX_CLIENT_FRAME).
    config.websocket_max_message_size = 64 * 1024
    return config


def evolution_client(
    settings: Settings, base_url: str, metrics: Metrics | None = None
) -> EvolutionClient:
    """The one client of this node for one Evolution server: retries and its breaker; every
    call is told to the service's metrics."""
    return EvolutionClient(
        base_url,
        settings.evolution_api_key,
        observer=None if metrics is None else metrics.evolution_call,
        retry=RetryPolicy(settings.retry_attempts, settings.retry_initial_s, settings.retry_max_s),
        breaker=CircuitBreaker(
            base_url,
            BreakerConfig(
                settings.breaker_failures, settings.breaker_window_s, settings.breaker_reset_s
            ),
        ),
    )


def make_responder(settings: Settings) -> Responder:
    """The OpenAI-compatible provider at AUZAP_AI_BASE_URL; without one, the built-in offline
    responder, whose replies say they are automatic (CONTRACT §1)."""
    if settings.ai_base_url is None:
        return OfflineResponder()
    return OpenAIResponder(
        settings.ai_base_url,
        settings.ai_api_key,
        settings.ai_model or "gpt-4o-mini",
        timeout_s=settings.ai_timeout_s,
        attempts=settings.ai_attempts,
        breaker=BreakerConfig(
            settings.breaker_failures, settings.breaker_window_s, settings.breaker_reset_s
        ),
    )


async def _run_root(
    settings: Settings,
    dsn: str,
    pool: Any,
    evolution: EvolutionClient,
    metrics: Metrics,
    responder: Responder | None,
    simulator_url: str | None,
    trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[Running],
) -> None:
    """The root nursery: inbox writer, HTTP server, supervisor tree, retention, backups."""
    async with trio.open_nursery() as root:
        hub = Hub(per_user=settings.ws_per_user, max_sockets=settings.ws_max)
        clock = wall_clock()
        deps = ActorDeps(
            pool,
            evolution,
            hub,
            settings.webhook_secret,
            now=clock,
            health_policy=HealthPolicy(
                interval_s=settings.health_interval_s,
                alert_threshold=settings.health_alert_threshold,
                max_failures=settings.health_max_failures,
                auto_reconnect=settings.auto_reconnect,
            ),
            connect_limiter=trio.CapacityLimiter(settings.connect_concurrency),
            boot_gate=trio.CapacityLimiter(settings.boot_evolution_concurrency),
            census=Census(evolution.fetch_instances, settings.health_interval_s / 2)
            if settings.health_census
            else None,
            metrics=metrics,
            name_frames=settings.max_instances_per_user > 1,
            auto_reply=AutoReplyConfig(
                responder=responder,
                debounce_s=settings.ai_debounce_s,
                context_messages=settings.ai_context_messages,
                resend_grace_s=settings.ai_resend_grace_s,
                typing_ms=settings.ai_typing_ms,
                stats=AutoReplyStats(on_count=metrics.auto_reply),
            ),
        )
        supervisor = Supervisor(
            deps,
            mailbox_capacity=settings.mailbox_capacity,
            boot_concurrency=settings.boot_concurrency,
            metrics=metrics,
        )
        doorbell = Doorbell()
        writer = InboxWriter(dsn, on_committed=doorbell.ring)
        await root.start(writer.run)
        actors = Actors(
            pool=pool,
            supervisor=supervisor,
            hub=hub,
            inbox_writer=writer,
            evolution=evolution,
            now=clock,
            node_id=settings.node_id,
            call_timeout_s=settings.call_timeout_s,
            metrics=metrics,
            max_instances_per_user=settings.max_instances_per_user,
        )
        web = WebContext(settings, actors, simulator_url)
        limits = HttpLimits(settings.http_max_connections, settings.send_timeout_s)
        stop_http = trio.Event()
        http_done = trio.Event()

        async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve_http(
                    create_app(web),
                    http_config(settings),
                    limits,
                    shutdown_trigger=stop_http.wait,
                    task_status=task_status,
                )
            finally:
                http_done.set()

        binds: list[str] = await root.start(run_http)
        port = _port_of(binds[0])
        deps.webhook_base_url = settings.public_base_url(port)
        await root.start(supervisor.run, doorbell)
        await root.start(run_retention, pool, retention_policy(settings))
        if settings.backup_dir is not None:
            await root.start(run_backups, pool, backup_policy(settings))
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        url = f"http://{host}:{port}"
        _banner(settings, url, simulator_url)
        task_status.started(Running(url, simulator_url, actors))

        await trigger()
        log.info("shutting down")
        stop_http.set()
        hub.close_all()
        with trio.move_on_after(3):
            await http_done.wait()
        root.cancel_scope.cancel()


async def _never() -> None:
    await trio.sleep_forever()


async def _serve_until_signal(settings: Settings) -> None:
    # The receiver is open before anything starts, so a SIGTERM during start-up is queued
    # and leads to a clean shutdown instead of killing the process with PostgreSQL running.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def first_signal() -> None:
            async for _ in signals:
                return

        await serve(settings, shutdown_trigger=first_signal)


def _banner(settings: Settings, url: str, simulator_url: str | None) -> None:
    lines = [f"auzap-actors serving on {url}"]
    if settings.demo:
        token = mint_user_token(settings.jwt_secret, DEMO_USER_ID, ttl_s=24 * 3600)
        lines += [
            f"  user page:         {url}/",
            f"  Evolution sim:     {simulator_url}",
            f"  demo user id:      {DEMO_USER_ID}",
            f"  demo user token:   {token}",
            f"  admin token:       {settings.admin_token}",
            "  (demo mode: secrets not set in the environment are random per run; Ctrl-C stops)",
        ]
    print("\n".join(lines), flush=True)


def run(settings: Settings) -> int:
    """Blocking entry point for `auzap-actors serve`."""
    try:
        trio_asyncio.run(_serve_until_signal, settings)
    except BaseException as exc:
        # A configuration the database contradicts (found once it is open) is one line, like
        # any other configuration error, not a traceback inside exception groups.
        cause = root_cause(exc)
        if isinstance(cause, ConfigError):
            raise cause from None
        raise
    return 0


def configure_logging(
    settings: Settings | None = None,
    *,
    stream: TextIO | None = None,
    level: int = logging.INFO,
    secrets: tuple[str | None, ...] = (),
) -> logging.Handler:
    """The process's log lines (observability/logs.py): AUZAP_LOG_FORMAT and AUZAP_LOG_LEVEL,
    every configured secret redacted by value (and tokens by shape, always).  Without
    `settings` (the operators' commands): `level`, and `secrets` redacted by value."""
    secret_values: list[str | None] = list(secrets)
    fmt = "auto"
    if settings is not None:
        fmt, level = settings.log_format, logging.getLevelName(settings.log_level.upper())
        secret_values = [
            settings.evolution_api_key,
            settings.webhook_secret,
            settings.admin_token,
            settings.jwt_secret,
            settings.metrics_token,
            settings.ai_api_key,
        ]
    return logs.configure_logging(
        level=level, fmt=fmt, secret_values=secret_values, stream=stream or sys.stderr
    )
