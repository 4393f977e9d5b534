"""`auzap-actors bench <scenario> [--json]`: argument parsing and the printed report."""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

from . import fanout, health, idle
from .scenarios import ApplyOptions, IngestOptions, apply, ingest


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers and commas: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a benchmark scenario and print figures")
    scenarios = bench.add_subparsers(dest="scenario", required=True)
    ingest_p = scenarios.add_parser(
        "ingest", help="webhooks acknowledged per second beside the no-op route"
    )
    ingest_p.add_argument("--rounds", type=int, default=3)
    ingest_p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ingest_p.add_argument("--concurrency", type=_ints, default=(1, 16, 64))
    ingest_p.add_argument(
        "--vs-baseline",
        action="store_true",
        help="also a FastAPI + uvicorn + asyncpg server (extra `bench`), same rounds",
    )
    ingest_p.add_argument("--json", action="store_true", help="print one JSON object")
    apply_p = scenarios.add_parser("apply", help="apply rate and inbox lag under sustained load")
    apply_p.add_argument("--duration", type=float, default=60.0, help="seconds of load per run")
    apply_p.add_argument("--instances", type=_ints, default=(1, 100))
    apply_p.add_argument("--concurrency", type=int, default=64)
    apply_p.add_argument("--drain-limit", type=float, default=60.0)
    apply_p.add_argument("--json", action="store_true", help="print one JSON object")
    actors_p = scenarios.add_parser(
        "actors", help="idle instance actors: RSS per actor, spawn and hydration time"
    )
    actors_p.add_argument(
        "--instances", type=_ints, default=(10_000,), help="e.g. 10000,100000 (long run)"
    )
    actors_p.add_argument("--rounds", type=int, default=3, help="service boots per count")
    actors_p.add_argument(
        "--health-interval",
        type=float,
        help="AUZAP_HEALTH_INTERVAL_S of the run (default: the service's, 60 s)",
    )
    actors_p.add_argument(
        "--settle", type=float, default=3.0, help="seconds after hydration before the RSS"
    )
    actors_p.add_argument("--json", action="store_true", help="print one JSON object")
    fanout_p = scenarios.add_parser(
        "fanout", help="webhook-to-frame latency with many browser sockets subscribed"
    )
    fanout_p.add_argument("--sockets", type=int, default=1000)
    fanout_p.add_argument("--rounds", type=int, default=3)
    fanout_p.add_argument("--posts", type=int, default=100, help="webhooks per round")
    fanout_p.add_argument("--json", action="store_true", help="print one JSON object")
    health_p = scenarios.add_parser(
        "health", help="CPU of the periodic health checks of many open instances"
    )
    health_p.add_argument("--instances", type=int, default=2_000)
    health_p.add_argument(
        "--interval", type=float, default=6.0, help="AUZAP_HEALTH_INTERVAL_S during the run"
    )
    health_p.add_argument("--window", type=float, default=30.0, help="seconds per window")
    health_p.add_argument("--rounds", type=int, default=3, help="windows")
    health_p.add_argument(
        "--no-census",
        action="store_true",
        help="AUZAP_HEALTH_CENSUS=false: one connectionState (or fetchInstances) per check",
    )
    health_p.add_argument("--json", action="store_true", help="print one JSON object")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def run(args: argparse.Namespace) -> int:
    if args.scenario == "ingest":
        report = ingest(
            IngestOptions(
                args.rounds, args.duration, args.concurrency, vs_baseline=args.vs_baseline
            )
        )
    elif args.scenario == "apply":
        report = apply(
            ApplyOptions(args.duration, args.instances, args.concurrency, args.drain_limit)
        )
    elif args.scenario == "actors":
        report = idle.actors(
            idle.ActorsOptions(
                args.instances, args.rounds, args.settle, health_interval_s=args.health_interval
            )
        )
    elif args.scenario == "fanout":
        report = fanout.fanout(fanout.FanoutOptions(args.sockets, args.rounds, args.posts))
    elif args.scenario == "health":
        report = health.health(
            health.HealthOptions(
                args.instances, args.interval, args.window, args.rounds, census=not args.no_census
            )
        )
    report["machine"] = machine()
    if args.json:
        print(json.dumps(report))
    else:
        print(render(report))
    return 0


def _spread(figure: dict[str, float]) -> str:
    return f"{figure['median']:g} ({figure['min']:g}-{figure['max']:g})"


def render(report: dict[str, Any]) -> str:
    lines = [f"scenario {report['scenario']} on {report['machine']}"]
    if report["scenario"] == "actors":
        lines += idle.render(report)
    elif report["scenario"] == "fanout":
        lines += fanout.render(report)
    elif report["scenario"] == "health":
        lines += health.render(report)
    elif report["scenario"] == "ingest":
        lines.append(
            f"{report['rounds']} rounds of {report['duration_s']:g} s per route; median (min-max)"
        )
        lines.append(
            f"{'c':>4}  {'no-op ok/s':>22}  {'ingest ok/s':>22}  {'ratio':>18}"
            f"  {'no-op p99 ms':>20}  {'ingest p99 ms':>20}  {'p99 ratio':>18}"
        )
        for c, row in report["by_concurrency"].items():
            lines.append(
                f"{c:>4}  {_spread(row['noop']['ok_per_s']):>22}"
                f"  {_spread(row['ingest']['ok_per_s']):>22}"
                f"  {_spread(row['throughput_ratio']):>18}"
                f"  {_spread(row['noop']['p99_ms']):>20}  {_spread(row['ingest']['p99_ms']):>20}"
                f"  {_spread(row['p99_ratio']):>18}"
            )
        drains = ", ".join(
            f"c={c}: {_spread(row['drain_after_ingest_s'])} s"
            for c, row in report["by_concurrency"].items()
        )
        lines.append(f"inbox drained after each ingest run in {drains}")
        if "baseline_ratio" in report:
            lines.append(
                f"{'c':>4}  {'baseline ok/s':>22}  {'baseline p99 ms':>20}"
                f"  {'ingest/baseline':>18}  {'no-op/baseline':>18}"
            )
            for c, row in report["by_concurrency"].items():
                lines.append(
                    f"{c:>4}  {_spread(row['baseline']['ok_per_s']):>22}"
                    f"  {_spread(row['baseline']['p99_ms']):>20}"
                    f"  {_spread(row['baseline_ratio']):>18}"
                    f"  {_spread(row['noop_baseline_ratio']):>18}"
                )
        lines.append(
            f"throughput_ratio at the highest concurrency {report['throughput_ratio']:g},"
            f" p99_ratio {report['p99_ratio']:g}"
            + (
                f", vs the FastAPI baseline {report['baseline_ratio']:g}"
                if "baseline_ratio" in report
                else ""
            )
        )
    elif report["scenario"] == "apply":
        for n, row in report["by_instances"].items():
            lines.append(
                f"{n} instance(s): acknowledged {row['acknowledged_per_s']} ev/s,"
                f" applied {row['applied_per_s_during_load']} ev/s during the load"
                f" ({row['applied_per_s_overall']} overall), max lag {row['max_lag_s']} s,"
                f" backlog at the end {row['pending_at_end_of_load']} rows,"
                f" drained in {row['drain_s']} s ({row['left_pending']} left)"
            )
    return "\n".join(lines)
