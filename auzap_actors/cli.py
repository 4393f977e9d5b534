"""The `auzap-actors` command line (CONTRACT §8)."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from .config import ConfigError, load_settings


def _serve(_: argparse.Namespace) -> int:
    from .serve import configure_logging, run

    settings = load_settings()
    configure_logging()
    return run(settings)


def _migrate(_: argparse.Namespace) -> int:
    import trio_asyncio

    from .serve import configure_logging, database
    from .store.db import open_pool
    from .store.migrate import migrate

    settings = load_settings()
    configure_logging()

    async def main() -> int:
        async with database(settings) as dsn, open_pool(dsn, min_size=1, max_size=1) as pool:
            applied = await migrate(pool)
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none"
        print(f"migrations applied: {names}")
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
    import os

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


def _bench(args: argparse.Namespace) -> int:
    from .bench import command as bench

    return bench.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auzap-actors", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (embedded defaults when unconfigured)")
    sub.add_parser("migrate", help="apply database migrations")
    sim = sub.add_parser("evolution-sim", help="run the Evolution API v2 simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--api-key", required=True)
    sim.add_argument("--qr-interval", type=float, default=45.0, help="seconds per QR code")
    sim.add_argument("--qr-limit", type=int, default=30, help="QR codes before giving up")
    token = sub.add_parser("token", help="mint a user JWT (needs AUZAP_JWT_SECRET)")
    token.add_argument("--user", required=True, help="user UUID (claim sub)")
    token.add_argument("--org", help="organization UUID")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    from .bench import command as bench

    bench.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "migrate": _migrate,
        "evolution-sim": _evolution_sim,
        "token": _token,
        "bench": _bench,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"auzap-actors: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
