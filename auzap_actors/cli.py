"""The `auzap-actors` command line (CONTRACT §8)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from .config import ConfigError, ToolSettings, load_settings, load_tool_settings


def _serve(_: argparse.Namespace) -> int:
    from .serve import configure_logging, run

    settings = load_settings()
    configure_logging(settings)
    return run(settings)


def _migrate(args: argparse.Namespace) -> int:
    import trio_asyncio

    from .serve import configure_logging, database
    from .store.db import open_pool
    from .store.migrate import migrate
    from .store.multi import enable_multi_instance

    # Only the database is needed (none of the service's secrets).
    settings = load_tool_settings()
    if args.multi_instance and settings.max_instances_per_user == 1:
        # The step is one-way in practice (a second instance per user cannot go back under
        # the seed's unique index): it needs the setting that asks for it.
        raise ConfigError(
            "--multi-instance drops the seed's one-instance-per-user index: set"
            " AUZAP_MAX_INSTANCES_PER_USER above 1 to ask for it"
        )
    configure_logging()

    async def main() -> int:
        async with database(settings) as dsn, open_pool(dsn, min_size=1, max_size=1) as pool:
            applied = await migrate(pool)
            changes = await enable_multi_instance(pool) if args.multi_instance else None
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none"
        print(f"migrations applied: {names}")
        if changes is not None:
            print(f"multi-instance schema: {', '.join(changes) or 'already in place'}")
        return 0

    result: int = trio_asyncio.run(main)
    return result


def _evolution_sim(args: argparse.Namespace) -> int:
    import trio

    from .evolution.simulator import SimulatorConfig, serve_simulator
    from .serve import configure_logging

    configure_logging()
    config = SimulatorConfig(
        api_key=args.api_key,
        qr_interval_s=args.qr_interval,
        qr_limit=args.qr_limit,
        state_file=args.state_file,
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_simulator, config, args.host, args.port)
            print(f"Evolution simulator listening on {url}", flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    return 0


def _token(args: argparse.Namespace) -> int:
    from .web.auth import mint_user_token

    secret = os.environ.get("AUZAP_JWT_SECRET", "").strip()
    if not secret:
        raise ConfigError("AUZAP_JWT_SECRET must be set to mint a token the service accepts")
    try:
        user = uuid.UUID(args.user)
        org = uuid.UUID(args.org) if args.org else None
    except ValueError:
        raise ConfigError("--user and --org must be UUIDs") from None
    print(mint_user_token(secret, user, org, ttl_s=args.ttl))
    return 0


def _tool(run: Any, settings: ToolSettings) -> int:
    """Run an operator's command (ops/) on the trio-asyncio loop.  A database or Evolution
    that cannot be reached is one line and exit code 2, not a traceback."""
    import trio_asyncio

    from .core.errors import root_cause
    from .serve import configure_logging

    configure_logging(level=logging.WARNING, secrets=(settings.evolution_api_key,))
    try:
        result: int = trio_asyncio.run(run)
    except BaseException as exc:
        # trio and trio-asyncio wrap what a task raised in exception groups: the one cause.
        cause = root_cause(exc)
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
            print(f"auzap-actors: the database could not be used: {cause!r}", file=sys.stderr)
            return 2
        raise
    return result


def _instances(args: argparse.Namespace) -> int:
    from .ops.instances import Options, run_instances

    settings = load_tool_settings()
    options = Options(
        command=args.action,
        name=getattr(args, "name", None),
        dry_run=getattr(args, "dry_run", False),
        verbose=args.verbose,
        as_json=args.json,
    )
    return _tool(lambda: run_instances(settings, options, sys.stdout), settings)


def _export(args: argparse.Namespace) -> int:
    from .ops.backup import ExportOptions, run_export

    if args.user is not None:
        try:
            uuid.UUID(args.user)
        except ValueError:
            raise ConfigError("--user must be a UUID") from None
    settings = load_tool_settings()
    options = ExportOptions(args.user, args.instance, args.output)
    # The summary goes to stderr when the export itself goes to stdout.
    out = sys.stdout if args.output and args.output != "-" else sys.stderr
    return _tool(lambda: run_export(settings, options, out), settings)


def _import(args: argparse.Namespace) -> int:
    from .ops.backup import run_import

    settings = load_tool_settings()
    if args.file != "-" and not os.path.isfile(args.file):
        print(f"auzap-actors: no such file: {args.file}", file=sys.stderr)
        return 1
    return _tool(lambda: run_import(settings, args.file, sys.stdout, None), settings)


def _bench(args: argparse.Namespace) -> int:
    from .bench import command as bench

    return bench.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auzap-actors", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (embedded defaults when unconfigured)")
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument(
        "--multi-instance",
        action="store_true",
        help="also allow several instances per user (needs AUZAP_MAX_INSTANCES_PER_USER > 1):"
        " drops the seed's unique index on whatsapp_instances(user_id); idempotent",
    )
    sim = sub.add_parser("evolution-sim", help="run the Evolution API v2 simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--api-key", required=True)
    sim.add_argument("--qr-interval", type=float, default=45.0, help="seconds per QR code")
    sim.add_argument("--qr-limit", type=int, default=30, help="QR codes before giving up")
    sim.add_argument(
        "--state-file", type=Path, help="JSON file the instances are loaded from and saved to"
    )
    token = sub.add_parser("token", help="mint a user JWT (needs AUZAP_JWT_SECRET)")
    token.add_argument("--user", required=True, help="user UUID (claim sub)")
    token.add_argument("--org", help="organization UUID")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    _tool_parsers(sub)
    from .bench import command as bench

    bench.add_parser(sub)
    return parser


def _tool_parsers(sub: Any) -> None:
    inst = sub.add_parser(
        "instances",
        help="find and fix legacy instances (the seed's migrate:whatsapp)",
        description="Exit codes: 0 nothing to do; 1 `update` has work (check) or a change"
        " failed; 3 what is left needs a human; 2 could not run.",
    )
    actions = inst.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="list every problem with a count (changes nothing)")
    update = actions.add_parser("update", help="fill user_id from names, adopt stray instances")
    update.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    one = actions.add_parser("migrate", help="check and update one instance")
    one.add_argument("name", help="the instance name")
    one.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    for parser in (check, update, one):
        parser.add_argument("--json", action="store_true", help="one JSON document")
        parser.add_argument("--verbose", action="store_true", help="list every name")
    export = sub.add_parser("export", help="one instance's backup as NDJSON")
    whose = export.add_mutually_exclusive_group(required=True)
    whose.add_argument("--user", help="the user's UUID")
    whose.add_argument("--instance", help="an instance name (a legacy row without user_id)")
    export.add_argument("--output", "-o", help="file (atomic; *.gz compressed), default stdout")
    restore = sub.add_parser("import", help="restore an export (idempotent)")
    restore.add_argument("file", help="an export file (plain or gzip), or - for stdin")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "migrate": _migrate,
        "evolution-sim": _evolution_sim,
        "token": _token,
        "instances": _instances,
        "export": _export,
        "import": _import,
        "bench": _bench,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"auzap-actors: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
