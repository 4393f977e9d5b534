"""The scenarios: `ingest` (acknowledged webhooks beside the no-op route) and `apply` (how fast
the actors apply what was acknowledged, and how far the inbox falls behind)."""

from __future__ import annotations

import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from .probe import inbox_mark, inbox_sample
from .stack import (
    Stack,
    finish_loadgen,
    run_loadgen,
    running_baseline,
    running_stack,
    start_loadgen,
)
from .stats import summary

WEBHOOK_PATH = "/api/webhook/whatsapp"
NOOP_PATH = "/_bench/noop"


def say(text: str) -> None:
    """Progress for the person running the bench (stderr: stdout carries the result)."""
    print(text, file=sys.stderr, flush=True)


def wait_drained(stack: Stack, after_id: int, limit_s: float) -> tuple[float, int]:
    """Wait until every row after `after_id` is applied: (seconds waited, rows still pending)."""
    started = time.monotonic()
    while True:
        sample = inbox_sample(stack.dsn, after_id)
        waited = time.monotonic() - started
        if sample.pending == 0 or waited >= limit_s:
            return round(waited, 2), sample.pending
        time.sleep(0.5)


@dataclass(frozen=True)
class IngestOptions:
    rounds: int = 3
    duration_s: float = 5.0
    concurrency: tuple[int, ...] = (1, 16, 64)
    drain_limit_s: float = 60.0
    vs_baseline: bool = False  # also the FastAPI + uvicorn + asyncpg server (bench.baseline)


def ingest(options: IngestOptions) -> dict[str, Any]:
    """Webhooks acknowledged per second, p50/p99, beside the same server's no-op route taking
    the same bodies; rounds interleave the two routes (alternating which goes first) and the
    inbox is drained between runs, so neither route pays for the other's leftover work.
    With `vs_baseline`, the reference server takes the same load in the same rounds (each
    round rotates which of the three goes first)."""
    with running_stack() as stack, ExitStack() as extra:
        say("opening 1 instance")
        stack.open_instances(1)
        routes = ["noop", "ingest"]
        baseline_port = None
        if options.vs_baseline:
            baseline_port = extra.enter_context(running_baseline(stack))
            routes.append("baseline")
        results: dict[str, Any] = {}
        for concurrency in options.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {route: [] for route in routes}
            drains: list[float] = []
            for n in range(options.rounds):
                first = n % len(routes)
                for route in routes[first:] + routes[:first]:
                    mark = inbox_mark(stack.dsn)
                    result = run_loadgen(
                        stack,
                        NOOP_PATH if route == "noop" else WEBHOOK_PATH,
                        stack.instances,
                        uuid.uuid4().hex[:8],
                        concurrency,
                        options.duration_s,
                        baseline_port if route == "baseline" else None,
                    )
                    runs[route].append(result)
                    if route == "ingest":
                        waited, left = wait_drained(stack, mark, options.drain_limit_s)
                        drains.append(waited)
                        result["drain_s"], result["left_pending"] = waited, left
                    say(
                        f"c={concurrency} round {n + 1} {route}: {result['ok_per_s']} ok/s,"
                        f" p99 {result['p99_ms']} ms, statuses {result['statuses']}"
                    )
            results[str(concurrency)] = _compare(runs, drains)
        top = results[str(max(options.concurrency))]
        report = {
            "scenario": "ingest",
            "rounds": options.rounds,
            "duration_s": options.duration_s,
            "throughput_ratio": top["throughput_ratio"]["median"],
            "p99_ratio": top["p99_ratio"]["median"],
            "by_concurrency": results,
        }
        if options.vs_baseline:
            report["baseline_ratio"] = top["baseline_ratio"]["median"]
            report["noop_baseline_ratio"] = top["noop_baseline_ratio"]["median"]
        return report


def _compare(runs: dict[str, list[dict[str, Any]]], drains: list[float]) -> dict[str, Any]:
    def figures(route: str) -> dict[str, Any]:
        return {
            key: summary([float(run[key]) for run in runs[route]])
            for key in ("ok_per_s", "p50_ms", "p99_ms")
        }

    pairs = list(zip(runs["ingest"], runs["noop"], strict=True))
    extra: dict[str, Any] = {}
    if "baseline" in runs:
        extra["baseline"] = figures("baseline")
        # This service's and its no-op route's throughput over the reference server's, per
        # round (the three runs of a round are side by side).
        extra["baseline_ratio"] = _ratios(runs["ingest"], runs["baseline"])
        extra["noop_baseline_ratio"] = _ratios(runs["noop"], runs["baseline"])
    return {
        **extra,
        "noop": figures("noop"),
        "ingest": figures("ingest"),
        # Ratios per round (the two runs of a round are side by side), then their spread.
        "throughput_ratio": summary(
            [float(i["ok_per_s"]) / max(float(n["ok_per_s"]), 1e-9) for i, n in pairs]
        ),
        "p99_ratio": summary(
            [float(i["p99_ms"]) / max(float(n["p99_ms"]), 1e-9) for i, n in pairs]
        ),
        "drain_after_ingest_s": summary(drains),
        "errors": sum(
            sum(v for k, v in run["statuses"].items() if not k.startswith("2"))
            + int(run["transport_errors"])
            for route_runs in runs.values()
            for run in route_runs
        ),
    }


def _ratios(top: list[dict[str, Any]], bottom: list[dict[str, Any]]) -> dict[str, float]:
    return summary(
        [
            float(a["ok_per_s"]) / max(float(b["ok_per_s"]), 1e-9)
            for a, b in zip(top, bottom, strict=True)
        ]
    )


@dataclass(frozen=True)
class ApplyOptions:
    duration_s: float = 60.0
    instance_counts: tuple[int, ...] = (1, 100)
    concurrency: int = 64
    drain_limit_s: float = 60.0


def apply(options: ApplyOptions) -> dict[str, Any]:
    """Sustained ingest into 1 hot instance, then spread over many: the apply rate and the
    inbox lag (age of the oldest unapplied row), sampled every second."""
    with running_stack() as stack:
        count = max(options.instance_counts)
        say(f"opening {count} instance(s)")
        stack.open_instances(count)
        results: dict[str, Any] = {}
        for instances in options.instance_counts:
            results[str(instances)] = _apply_run(stack, stack.instances[:instances], options)
        return {"scenario": "apply", "duration_s": options.duration_s, "by_instances": results}


def _apply_run(stack: Stack, instances: list[str], options: ApplyOptions) -> dict[str, Any]:
    mark = inbox_mark(stack.dsn)
    started = time.monotonic()
    proc = start_loadgen(
        stack, WEBHOOK_PATH, instances, uuid.uuid4().hex[:8], options.concurrency,
        options.duration_s,
    )  # fmt: skip
    samples: list[dict[str, float]] = []
    while proc.poll() is None:
        time.sleep(1.0)
        sample = inbox_sample(stack.dsn, mark)
        at = round(time.monotonic() - started, 1)
        samples.append({"t": at, "pending": sample.pending, "lag_s": round(sample.lag_s, 2)})
        say(f"  {len(instances)}: t={at:5.1f}s pending={sample.pending} lag={sample.lag_s:.1f}s")
    load = finish_loadgen(proc, timeout=30)
    load_s = time.monotonic() - started
    at_end = inbox_sample(stack.dsn, mark)
    drain_s, left = wait_drained(stack, mark, options.drain_limit_s)
    final = inbox_sample(stack.dsn, mark)
    total_s = load_s + drain_s
    return {
        "instances": len(instances),
        "acknowledged_per_s": load["ok_per_s"],
        "ingest_p99_ms": load["p99_ms"],
        "applied_per_s_during_load": round(at_end.applied / load_s, 1),
        "applied_per_s_overall": round(final.applied / total_s, 1),
        "max_lag_s": max((s["lag_s"] for s in samples), default=0.0),
        "lag_at_end_of_load_s": round(at_end.lag_s, 2),
        "pending_at_end_of_load": at_end.pending,
        "drain_s": drain_s,
        "left_pending": left,
        "samples": samples,
    }
