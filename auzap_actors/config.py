"""Configuration from the environment (CONTRACT §1).

`load_settings` is the only place that reads `os.environ`; everything else receives a
`Settings`.  Bad configuration raises `ConfigError` whose text is the one line the launcher
prints before exiting.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# `user_<uuid>_<n>` names take n up to 999 (core/naming.py).
MAX_INSTANCES_LIMIT = 100


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class BackupRetention:
    """Which scheduled backups of an instance are kept: the newest `keep`, or those younger
    than `days` (the newest one always stays)."""

    keep: int | None = None
    days: float | None = None


@dataclass(frozen=True, slots=True)
class ToolSettings:
    """What the operators' commands (`instances`, `export`, `import`) need: the database and
    Evolution, none of the service's secrets."""

    database_url: str | None
    data_dir: Path
    evolution_api_url: str | None
    evolution_api_key: str = field(repr=False)
    # `migrate --multi-instance` runs only when this is above 1.
    max_instances_per_user: int = 1


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    evolution_api_url: str | None
    evolution_api_key: str
    webhook_url: str | None
    frontend_url: str | None
    jwt_secret: str
    admin_token: str
    webhook_secret: str
    host: str
    port: int
    node_id: str
    health_interval_s: float = 60.0
    health_alert_threshold: int = 2
    health_max_failures: int = 3
    auto_reconnect: bool = True
    health_census: bool = True
    retry_attempts: int = 3
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0
    breaker_failures: int = 5
    breaker_window_s: float = 60.0
    breaker_reset_s: float = 30.0
    ai_base_url: str | None = None
    ai_api_key: str | None = field(default=None, repr=False)
    ai_model: str | None = None
    # Auto-reply (README "AI auto-reply"): rapid messages of one contact within this window
    # get one reply; the provider's per-attempt timeout and attempts; the messages of the
    # conversation the responder reads; how long an interrupted send waits for its echo
    # before it is sent again; the typing indicator's length.
    ai_debounce_s: float = 3.0
    ai_timeout_s: float = 20.0
    ai_attempts: int = 2
    ai_context_messages: int = 20
    ai_resend_grace_s: float = 30.0
    ai_typing_ms: int = 1000
    # Outside demo mode, without AUZAP_AI_BASE_URL: answer with the offline responder (its
    # replies say they are automatic) instead of refusing to turn auto-reply on.
    webhook_max_bytes: int = 16 * 1024 * 1024
    api_max_bytes: int = 64 * 1024
    ws_per_user: int = 5
    # Instances one user may own; 1 keeps the seed's one-instance-per-user schema exactly.
    max_instances_per_user: int = 1
    ws_max: int = 10000
    send_timeout_s: float = 10.0
    http_max_connections: int = 12000
    http_keep_alive_s: float = 5.0
    db_acquire_timeout_s: float = 5.0
    db_pool_size: int = 32
    mailbox_capacity: int = 64
    call_timeout_s: float = 30.0
    # A connection on which the client sends nothing for this long is closed (browser sockets
    # answer hypercorn's pings every third of it).  Outlasts the slowest request (an actor call).
    http_read_timeout_s: float = 60.0
    boot_concurrency: int = 8
    connect_concurrency: int = 8
    boot_evolution_concurrency: int = 16
    # Retention (store/retention.py): days after which settled inbox rows, orphans and waiting
    # patches are deleted; rows settled as failed are kept longer for operators.
    inbox_retention_days: int = 7
    inbox_failed_retention_days: int = 30
    retention_interval_s: float = 600.0
    jwks_url: str | None = None  # unset: user tokens are HS256 with jwt_secret only
    jwt_issuer: str | None = None  # unset: `iss` is not checked
    jwks_refresh_s: float = 60.0  # at most one JWKS fetch per this many seconds
    # Scheduled backups (store/backups.py): off while backup_dir is None.
    backup_dir: Path | None = None
    backup_interval_s: float = 86400.0
    backup_retention: BackupRetention = field(default_factory=lambda: BackupRetention(keep=7))
    # Logs: json, text, or auto (text on a terminal, JSON otherwise); the root level.
    log_format: str = "auto"
    log_level: str = "info"
    # /metrics: open unless auth is required; then the admin token or the scrape-only
    # metrics token (which alone grants nothing else) is needed as a Bearer token.
    metrics_require_auth: bool = False
    metrics_token: str | None = field(default=None, repr=False)
    # Demo mode: random secrets, the built-in simulator, a login that mints tokens.  Only when
    # nothing real is configured (or AUZAP_DEMO=1 with nothing real beside it).
    demo: bool = False
    # `POST /_bench/noop` (reads the body, answers like a webhook): the HTTP ceiling that
    # `auzap-actors bench ingest` measures beside the real route.  Off unless asked for.
    bench_noop: bool = False

    def public_base_url(self, bound_port: int) -> str:
        """The base URL Evolution must call back (WEBHOOK_URL or our own listener)."""
        if self.webhook_url:
            return self.webhook_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{bound_port}"

    def __repr__(self) -> str:  # secrets never reach logs
        return (
            f"<Settings node={self.node_id} listen={self.host}:{self.port} "
            f"db={'external' if self.database_url else 'embedded'} "
            f"evolution={self.evolution_api_url or 'simulator'}>"
        )


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.query):
        raise ConfigError(f"{name} is not a valid {'/'.join(schemes)} URL: {value!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).resolve() if value else None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _secret(env: Mapping[str, str], name: str, demo: bool, min_len: int = 16) -> str:
    value = env.get(name, "").strip()
    if value:
        if len(value) < min_len:
            raise ConfigError(f"{name} must be at least {min_len} characters long")
        return value
    if demo:
        return secrets.token_urlsafe(32)
    raise ConfigError(f"{name} is required (outside demo mode)")


# Any of these means a real deployment: demo mode (which mints tokens for anyone who asks)
# must then be impossible.
REAL_SETTINGS = (
    "DATABASE_URL",
    "EVOLUTION_API_URL",
    "EVOLUTION_API_KEY",
    "AUZAP_JWT_SECRET",
    "AUZAP_JWKS_URL",
    "AUZAP_WEBHOOK_SECRET",
    "AUZAP_ADMIN_TOKEN",
)


def _demo(env: Mapping[str, str]) -> bool:
    """Demo mode: explicit (AUZAP_DEMO=1), or implied when nothing real is configured."""
    configured = [name for name in REAL_SETTINGS if env.get(name, "").strip()]
    forced = _bool(env, "AUZAP_DEMO", False)
    if forced and configured:
        raise ConfigError(
            f"AUZAP_DEMO=1 cannot be used with {configured[0]} set: demo mode makes up its"
            " secrets, runs its own Evolution simulator and lets anyone log in"
        )
    if forced:
        return True
    if env.get("AUZAP_DEMO", "").strip() and not configured:
        return False  # AUZAP_DEMO=0 with nothing configured: the checks below name what is missing
    return not configured


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


LOG_LEVELS = ("debug", "info", "warning", "error")


def _metrics_token(env: Mapping[str, str]) -> str | None:
    value = env.get("AUZAP_METRICS_TOKEN", "").strip()
    if value and len(value) < 16:
        raise ConfigError("AUZAP_METRICS_TOKEN must be at least 16 characters long")
    return value or None


def _check(settings: Settings) -> Settings:
    if settings.retry_max_s < settings.retry_initial_s:
        raise ConfigError("AUZAP_RETRY_MAX_S must not be smaller than AUZAP_RETRY_INITIAL_S")
    if settings.http_read_timeout_s <= settings.call_timeout_s:
        # A client waits silently for its answer: the read timeout must outlast an actor call.
        raise ConfigError(
            f"AUZAP_HTTP_READ_TIMEOUT_S must be longer than the call timeout"
            f" ({settings.call_timeout_s:g} s)"
        )
    if settings.jwt_secret == settings.webhook_secret:
        # Otherwise the key that signs users' tokens (Supabase's anon key is signed with it
        # too) would pass webhook authentication.
        raise ConfigError("AUZAP_WEBHOOK_SECRET must differ from AUZAP_JWT_SECRET")
    if settings.health_max_failures < settings.health_alert_threshold:
        # Reconnecting before the user was alerted would skip the promised warning.
        raise ConfigError(
            "AUZAP_HEALTH_MAX_FAILURES must not be smaller than AUZAP_HEALTH_ALERT_THRESHOLD"
        )
    if settings.inbox_failed_retention_days < settings.inbox_retention_days:
        # Failed rows are the ones worth reading later: never deleted before the others.
        raise ConfigError(
            "AUZAP_INBOX_FAILED_RETENTION_DAYS must not be smaller than AUZAP_INBOX_RETENTION_DAYS"
        )
    if settings.metrics_token is not None and settings.metrics_token in (
        settings.admin_token,
        settings.jwt_secret,
        settings.webhook_secret,
    ):
        # A scrape-only token handed to a monitoring system must grant nothing else.
        raise ConfigError(
            "AUZAP_METRICS_TOKEN must differ from the admin token, the JWT and webhook secrets"
        )
    if settings.ws_max >= settings.http_max_connections:
        # Every browser socket is an HTTP connection: a socket cap at or above the connection
        # cap could never be reached, and sockets would starve the API of connections.
        raise ConfigError("AUZAP_WS_MAX must be smaller than AUZAP_HTTP_MAX_CONNECTIONS")
    return settings


def _retention(env: Mapping[str, str]) -> BackupRetention:
    """AUZAP_BACKUP_RETENTION: `N` keeps the newest N backups per instance, `Nd` those younger
    than N days."""
    raw = env.get("AUZAP_BACKUP_RETENTION", "").strip().lower()
    if not raw:
        return BackupRetention(keep=7)
    try:
        if raw.endswith("d"):
            days = float(raw[:-1])
            if 0 < days <= 36500:
                return BackupRetention(days=days)
        else:
            keep = int(raw)
            if 1 <= keep <= 100000:
                return BackupRetention(keep=keep)
    except ValueError:
        pass
    raise ConfigError(f"AUZAP_BACKUP_RETENTION must be a count (7) or days (30d), got {raw!r}")


def _data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("AUZAP_DATA_DIR", "").strip() or "./.auzap").resolve()


def load_tool_settings(env: Mapping[str, str] | None = None) -> ToolSettings:
    """DATABASE_URL (embedded PostgreSQL in AUZAP_DATA_DIR without it), EVOLUTION_API_URL and
    EVOLUTION_API_KEY, checked as for the service; nothing else is needed or read."""
    env = os.environ if env is None else env
    evolution_api_url = _url(env, "EVOLUTION_API_URL", ("http", "https"))
    api_key = env.get("EVOLUTION_API_KEY", "").strip()
    if evolution_api_url and not api_key:
        raise ConfigError("EVOLUTION_API_KEY is required when EVOLUTION_API_URL is set")
    return ToolSettings(
        database_url=_url(env, "DATABASE_URL", ("postgres", "postgresql")),
        data_dir=_data_dir(env),
        evolution_api_url=evolution_api_url.rstrip("/") if evolution_api_url else None,
        evolution_api_key=api_key,
        max_instances_per_user=_max_instances(env),
    )


def _max_instances(env: Mapping[str, str]) -> int:
    return _int(env, "AUZAP_MAX_INSTANCES_PER_USER", 1, 1, MAX_INSTANCES_LIMIT)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read CONTRACT §1 variables; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    database_url = _url(env, "DATABASE_URL", ("postgres", "postgresql"))
    evolution_api_url = _url(env, "EVOLUTION_API_URL", ("http", "https"))
    demo = _demo(env)
    if not demo and evolution_api_url is None:
        raise ConfigError(
            "EVOLUTION_API_URL is required (demo mode, with its built-in simulator, runs only"
            " when nothing real is configured)"
        )
    api_key = env.get("EVOLUTION_API_KEY", "").strip()
    if evolution_api_url and not api_key:
        raise ConfigError("EVOLUTION_API_KEY is required when EVOLUTION_API_URL is set")
    if demo and not api_key:
        api_key = secrets.token_urlsafe(24)
    ai_key = env.get("AUZAP_AI_API_KEY", "").strip() or None
    # At least a day: deduplication of Evolution's re-deliveries (up to ~25 minutes after the
    # first attempt) needs the rows.
    inbox_days = _int(env, "AUZAP_INBOX_RETENTION_DAYS", 7, 1, 3650)
    settings = Settings(
        database_url=database_url,
        data_dir=_data_dir(env),
        evolution_api_url=evolution_api_url.rstrip("/") if evolution_api_url else None,
        evolution_api_key=api_key,
        webhook_url=_url(env, "WEBHOOK_URL", ("http", "https")),
        frontend_url=_url(env, "FRONTEND_URL", ("http", "https")),
        # HS256 keys: at least 32 bytes (RFC 7518 §3.2); Supabase's secrets are longer.
        jwt_secret=_secret(env, "AUZAP_JWT_SECRET", demo, min_len=32),
        admin_token=_secret(env, "AUZAP_ADMIN_TOKEN", demo),
        webhook_secret=_secret(env, "AUZAP_WEBHOOK_SECRET", demo, min_len=32),
        host=env.get("AUZAP_HOST", "").strip() or "127.0.0.1",
        port=_int(env, "AUZAP_PORT", 8000, 0, 65535),
        node_id=env.get("AUZAP_NODE_ID", "").strip() or f"{socket.gethostname()}-{os.getpid()}",
        health_interval_s=_float(env, "AUZAP_HEALTH_INTERVAL_S", 60.0, 0.01, 86400.0),
        health_alert_threshold=_int(env, "AUZAP_HEALTH_ALERT_THRESHOLD", 2, 1, 1000),
        health_max_failures=_int(env, "AUZAP_HEALTH_MAX_FAILURES", 3, 1, 1000),
        auto_reconnect=_bool(env, "AUZAP_AUTO_RECONNECT", True),
        health_census=_bool(env, "AUZAP_HEALTH_CENSUS", True),
        retry_attempts=_int(env, "AUZAP_RETRY_ATTEMPTS", 3, 1, 20),
        retry_initial_s=_float(env, "AUZAP_RETRY_INITIAL_S", 1.0, 0.0, 600.0),
        retry_max_s=_float(env, "AUZAP_RETRY_MAX_S", 30.0, 0.0, 3600.0),
        breaker_failures=_int(env, "AUZAP_BREAKER_FAILURES", 5, 1, 10000),
        breaker_window_s=_float(env, "AUZAP_BREAKER_WINDOW_S", 60.0, 0.01, 86400.0),
        breaker_reset_s=_float(env, "AUZAP_BREAKER_RESET_S", 30.0, 0.01, 86400.0),
        ai_base_url=_url(env, "AUZAP_AI_BASE_URL", ("http", "https")),
        ai_api_key=ai_key,
        ai_model=env.get("AUZAP_AI_MODEL", "").strip() or None,
        ai_debounce_s=_float(env, "AUZAP_AI_DEBOUNCE_S", 3.0, 0.0, 300.0),
        ai_timeout_s=_float(env, "AUZAP_AI_TIMEOUT_S", 20.0, 0.1, 300.0),
        ai_attempts=_int(env, "AUZAP_AI_ATTEMPTS", 2, 1, 10),
        ai_context_messages=_int(env, "AUZAP_AI_CONTEXT_MESSAGES", 20, 1, 200),
        ai_resend_grace_s=_float(env, "AUZAP_AI_RESEND_GRACE_S", 30.0, 0.0, 3600.0),
        ai_typing_ms=_int(env, "AUZAP_AI_TYPING_MS", 1000, 0, 20000),
        boot_concurrency=_int(env, "AUZAP_BOOT_CONCURRENCY", 8, 1, 1000),
        connect_concurrency=_int(env, "AUZAP_CONNECT_CONCURRENCY", 8, 1, 1000),
        boot_evolution_concurrency=_int(env, "AUZAP_BOOT_EVOLUTION_CONCURRENCY", 16, 1, 1000),
        webhook_max_bytes=_int(
            env, "AUZAP_WEBHOOK_MAX_BYTES", 16 * 1024 * 1024, 1024, 512 * 1024 * 1024
        ),
        jwks_url=_url(env, "AUZAP_JWKS_URL", ("http", "https")),
        jwt_issuer=env.get("AUZAP_JWT_ISSUER", "").strip() or None,
        jwks_refresh_s=_float(env, "AUZAP_JWKS_REFRESH_S", 60.0, 0.1, 86400.0),
        demo=demo,
        bench_noop=_bool(env, "AUZAP_BENCH_NOOP", False),
        inbox_retention_days=inbox_days,
        # By default failed rows stay 30 days, or as long as the others when that is longer.
        inbox_failed_retention_days=_int(
            env, "AUZAP_INBOX_FAILED_RETENTION_DAYS", max(30, inbox_days), 1, 3650
        ),
        retention_interval_s=_float(env, "AUZAP_RETENTION_INTERVAL_S", 600.0, 1.0, 86400.0),
        api_max_bytes=_int(env, "AUZAP_API_MAX_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
        ws_per_user=_int(env, "AUZAP_WS_PER_USER", 5, 1, 1000),
        max_instances_per_user=_max_instances(env),
        ws_max=_int(env, "AUZAP_WS_MAX", 10000, 1, 1_000_000),
        send_timeout_s=_float(env, "AUZAP_SEND_TIMEOUT_S", 10.0, 0.1, 600.0),
        http_max_connections=_int(env, "AUZAP_HTTP_MAX_CONNECTIONS", 12000, 2, 1_000_000),
        http_keep_alive_s=_float(env, "AUZAP_HTTP_KEEP_ALIVE_S", 5.0, 0.1, 3600.0),
        http_read_timeout_s=_float(env, "AUZAP_HTTP_READ_TIMEOUT_S", 60.0, 1.0, 86400.0),
        db_acquire_timeout_s=_float(env, "AUZAP_DB_ACQUIRE_TIMEOUT_S", 5.0, 0.01, 600.0),
        db_pool_size=_int(env, "AUZAP_DB_POOL_SIZE", 32, 2, 1000),
        backup_dir=_path(env, "AUZAP_BACKUP_DIR"),
        backup_interval_s=_float(env, "AUZAP_BACKUP_INTERVAL_S", 86400.0, 1.0, 30 * 86400.0),
        backup_retention=_retention(env),
        log_format=_choice(env, "AUZAP_LOG_FORMAT", "auto", ("auto", "json", "text")),
        log_level=_choice(env, "AUZAP_LOG_LEVEL", "info", LOG_LEVELS),
        # A metrics token implies that /metrics wants a token.
        metrics_require_auth=_bool(env, "AUZAP_METRICS_REQUIRE_AUTH", False)
        or bool(env.get("AUZAP_METRICS_TOKEN", "").strip()),
        metrics_token=_metrics_token(env),
    )
    return _check(settings)
