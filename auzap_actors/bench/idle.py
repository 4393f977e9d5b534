"""`bench actors`: many idle instance actors in one service process.

N instance rows are seeded with SQL (disconnected, never created at Evolution: an idle
account), then the service is restarted and timed: until `/readyz` answers, and until its
`/metrics` counts N actors `running` (every actor has loaded its row and drained its empty
inbox: the hydration).  Its RSS then, minus the RSS of the same service with 0 instances
(started the same way), divided by N, is the memory of one idle actor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from .scenarios import say
from .seed import count_instances, new_users, seed_instances
from .stack import Stack, running_stack
from .stats import summary

RUNNING = "auzap_actors{state=running}"


@dataclass(frozen=True)
class ActorsOptions:
    instance_counts: tuple[int, ...] = (10_000,)
    rounds: int = 3
    settle_s: float = 3.0
    limit_s: float = 1800.0
    # AUZAP_HEALTH_INTERVAL_S of the run; None: the production default (60 s).  Every actor's
    # timer ticks at that interval even when its instance is not watched, so a long one
    # shows the boot and the memory without that background work.
    health_interval_s: float | None = None


def actors(options: ActorsOptions) -> dict[str, Any]:
    env = {}
    if options.health_interval_s is not None:
        env["AUZAP_HEALTH_INTERVAL_S"] = str(options.health_interval_s)
    with running_stack(env) as stack:
        baseline = [_boot(stack, 0, options) for _ in range(options.rounds)]
        base_rss = summary([b["rss_mib"] for b in baseline])
        say(f"0 instances: RSS {base_rss['median']} MiB")
        results: dict[str, Any] = {}
        for count in sorted(options.instance_counts):
            have = count_instances(stack.dsn)
            say(f"seeding {count - have} instance rows")
            seed_instances(stack.dsn, new_users(count - have))
            boots = [_boot(stack, count, options) for _ in range(options.rounds)]
            per_actor_kib = [(b["rss_mib"] - base_rss["median"]) * 1024 / count for b in boots]
            results[str(count)] = {
                "instances": count,
                "ready_s": summary([b["ready_s"] for b in boots]),
                "hydrated_s": summary([b["hydrated_s"] for b in boots]),
                "spawn_ms_per_actor": summary([b["hydrated_s"] * 1000 / count for b in boots]),
                "rss_mib": summary([b["rss_mib"] for b in boots]),
                "rss_above_baseline_mib": summary(
                    [b["rss_mib"] - base_rss["median"] for b in boots]
                ),
                "rss_kib_per_actor": summary(per_actor_kib),
                "projected_100k_mib": round(summary(per_actor_kib)["median"] * 100_000 / 1024, 1),
            }
        return {
            "scenario": "actors",
            "rounds": options.rounds,
            "health_interval_s": options.health_interval_s or 60.0,
            "baseline_rss_mib": base_rss,
            "baseline_ready_s": summary([b["ready_s"] for b in baseline]),
            "by_instances": results,
        }


def _running(stack: Stack) -> int:
    try:
        return int(stack.metrics().get(RUNNING, 0))
    except httpx.HTTPError:
        return -1  # not listening yet


def _boot(stack: Stack, count: int, options: ActorsOptions) -> dict[str, float]:
    """Restart the service over `count` instances: seconds to ready and to hydrated, RSS."""
    stack.restart_service()
    started = time.monotonic()
    stack.wait_ready(timeout=options.limit_s)
    ready_s = time.monotonic() - started
    while True:
        polled = time.monotonic()
        running = _running(stack)
        if running >= count:
            break
        if polled - started > options.limit_s:
            raise RuntimeError(f"only {running}/{count} actors running after {options.limit_s} s")
        # A scrape walks every actor: poll about a tenth of the time, so the measurement does
        # not slow the boot it measures, yet never pause longer than 5 % of the time so far
        # (the figure is late by at most that pause).
        took = time.monotonic() - polled
        time.sleep(min(max(0.25, 9 * took), max(1.0, 0.05 * (time.monotonic() - started))))
    hydrated_s = time.monotonic() - started
    time.sleep(options.settle_s)  # the boot's garbage is collected, buffers settle
    _running(stack)  # the scrape path warmed in both the baseline and the loaded run
    rss = stack.rss_mib()
    say(
        f"  {count} instances: ready {ready_s:.2f} s, {running} running after"
        f" {hydrated_s:.2f} s, RSS {rss:.1f} MiB"
    )
    return {"ready_s": ready_s, "hydrated_s": hydrated_s, "rss_mib": rss}


def render(report: dict[str, Any]) -> list[str]:
    base = report["baseline_rss_mib"]
    lines = [
        f"{report['rounds']} boots each (AUZAP_HEALTH_INTERVAL_S"
        f" {report['health_interval_s']:g}); median (min-max);"
        f" service with 0 instances: RSS {base['median']:g} MiB"
    ]
    for n, row in report["by_instances"].items():
        lines.append(
            f"{n} idle actors: ready {_s(row['ready_s'])} s, all running (hydrated) after"
            f" {_s(row['hydrated_s'])} s = {_s(row['spawn_ms_per_actor'])} ms per actor;"
            f" RSS +{_s(row['rss_above_baseline_mib'])} MiB = {_s(row['rss_kib_per_actor'])}"
            f" KiB per actor (100k projected: {row['projected_100k_mib']:g} MiB)"
        )
    return lines


def _s(figure: dict[str, float]) -> str:
    return f"{figure['median']:.3g} ({figure['min']:.3g}-{figure['max']:.3g})"
