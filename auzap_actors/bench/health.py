"""`bench health`: what the periodic health checks of many connected instances cost.

N instances exist in both places: the simulator starts from a state file holding N open,
logged-in instances, and N matching rows (`open`, created at Evolution) are seeded with SQL;
then the service is restarted over them.  Once every actor has booted (its boot check done),
the service process's CPU time (/proc/<pid>/stat) is read over windows, next to the periodic
checks it completed (its /metrics `auzap_health_checks_total{purpose="periodic"}`).

The default run has 2,000 instances checked every 6 s (AUZAP_HEALTH_INTERVAL_S): the rate of
10,000 every 30 s, 5 x the production one, so that a window of seconds holds enough checks
(10,000 instances booting at once do not settle within 5 minutes on 2 cores: `--instances
10000 --interval 30` is the long run); the cost per check is the window's CPU over its
checks, and the projection to the production interval of 60 s is that cost x N / 60 s, as a
share of one core, for N and for the issue's 10,000.  The CPU counted is all of the
service's: timers, mailboxes, the Evolution calls, the health rows it writes, its idle work.
PostgreSQL's and the simulator's CPU is not counted.

With the census on (the default, AUZAP_HEALTH_CENSUS), the periodic checks of healthy
instances are answered by one fetchInstances of every instance per half interval instead of
one call each: every check still ticks, steps and is recorded, only its HTTP exchange is
shared.  `--no-census` measures the one-call-per-check path; the report lists the calls made
to Evolution by endpoint.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .scenarios import say
from .seed import new_users, seed_instances, simulator_state
from .stack import Stack, running_stack
from .stats import summary

RUNNING = "auzap_actors{state=running}"


@dataclass(frozen=True)
class HealthOptions:
    instances: int = 2_000
    interval_s: float = 6.0
    window_s: float = 30.0
    rounds: int = 3
    boot_limit_s: float = 600.0
    census: bool = True  # AUZAP_HEALTH_CENSUS: healthy instances' checks share fetchInstances


def _checks(samples: dict[str, float], purpose: str) -> int:
    return int(
        sum(
            value
            for key, value in samples.items()
            if key.startswith("auzap_health_checks_total{") and f"purpose={purpose}," in key
        )
    )


def _calls(samples: dict[str, float]) -> dict[str, int]:
    """Calls to Evolution over the whole run (boot included), by endpoint."""
    found: dict[str, int] = {}
    for key, value in samples.items():
        if key.startswith("auzap_evolution_requests_total{"):
            endpoint = key.split("endpoint=", 1)[1].split(",", 1)[0]
            found[endpoint] = found.get(endpoint, 0) + int(value)
    return found


def _results(samples: dict[str, float]) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, value in samples.items():
        if key.startswith("auzap_health_checks_total{") and "purpose=periodic," in key:
            result = key.split("result=", 1)[1].rstrip("}")
            found[result] = found.get(result, 0) + int(value)
    return found


def health(options: HealthOptions) -> dict[str, Any]:
    users = new_users(options.instances)
    scratch = Path(tempfile.mkdtemp(prefix="auzap-bench-sim-"))
    try:
        state = simulator_state(scratch / "simulator.json", users)
        env = {
            "AUZAP_HEALTH_INTERVAL_S": str(options.interval_s),
            "AUZAP_HEALTH_CENSUS": "true" if options.census else "false",
        }
        with running_stack(env, sim_state=state) as stack:
            say(f"seeding {options.instances} open instances")
            seed_instances(stack.dsn, users, status="open", in_evolution=True)
            boot_s = _boot(stack, options)
            windows = [_window(stack, options) for _ in range(options.rounds)]
            final = stack.metrics()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    per_check_ms = [w["cpu_s"] * 1000 / max(w["checks"], 1) for w in windows]
    core_pct_60 = [ms / 1000 * options.instances / 60 * 100 for ms in per_check_ms]
    core_pct_10k = [ms / 1000 * 10_000 / 60 * 100 for ms in per_check_ms]
    return {
        "scenario": "health",
        "instances": options.instances,
        "interval_s": options.interval_s,
        "census": options.census,
        "evolution_calls": _calls(final),
        "window_s": options.window_s,
        "rounds": options.rounds,
        "boot_s": round(boot_s, 2),
        "checks_per_s": summary([w["checks"] / w["seconds"] for w in windows]),
        "expected_checks_per_s": round(options.instances / options.interval_s, 1),
        "cpu_core_pct_at_interval": summary([w["cpu_s"] / w["seconds"] * 100 for w in windows]),
        "cpu_ms_per_check": summary(per_check_ms),
        "core_pct_at_60s": summary(core_pct_60),
        "core_pct_10000_at_60s": summary(core_pct_10k),
        "periodic_results": _results(final),
    }


def _boot(stack: Stack, options: HealthOptions) -> float:
    """Restart the service over the seeded rows; seconds until every actor did its boot
    check."""
    stack.restart_service()
    started = time.monotonic()
    stack.wait_ready(timeout=options.boot_limit_s)
    while True:
        polled = time.monotonic()
        try:
            samples = stack.metrics()
        except httpx.TimeoutException:
            # The boot keeps the service too busy to answer yet.
            if time.monotonic() - started > options.boot_limit_s:
                raise
            continue
        booted = _checks(samples, "boot")
        if booted >= options.instances and samples.get(RUNNING, 0) >= options.instances:
            break
        if time.monotonic() - started > options.boot_limit_s:
            raise RuntimeError(f"{booted}/{options.instances} boot checks after the limit")
        took = time.monotonic() - polled  # a scrape walks every actor: not too often
        time.sleep(min(max(1.0, 9 * took), max(2.0, 0.05 * (time.monotonic() - started))))
    boot_s = time.monotonic() - started
    say(f"  {options.instances} actors booted and checked in {boot_s:.1f} s")
    # The first periodic ticks are spread over one interval from each actor's start: wait
    # one interval so the windows see the steady rate.
    time.sleep(options.interval_s)
    return boot_s


def _window(stack: Stack, options: HealthOptions) -> dict[str, float]:
    checks_before = _checks(stack.metrics(), "periodic")
    cpu_before, started = stack.cpu_seconds(), time.monotonic()
    time.sleep(options.window_s)
    cpu_after, seconds = stack.cpu_seconds(), time.monotonic() - started
    checks = _checks(stack.metrics(), "periodic") - checks_before
    cpu = cpu_after - cpu_before
    say(
        f"  window {seconds:.1f} s: {checks} periodic checks, {cpu:.2f} s CPU"
        f" ({cpu * 1000 / max(checks, 1):.3f} ms per check)"
    )
    return {"checks": checks, "cpu_s": cpu, "seconds": seconds}


def render(report: dict[str, Any]) -> list[str]:
    def s(figure: dict[str, float]) -> str:
        return f"{figure['median']:.3g} ({figure['min']:.3g}-{figure['max']:.3g})"

    return [
        f"{report['instances']} open instances, checked every {report['interval_s']:g} s"
        f" (census {'on' if report['census'] else 'off'});"
        f" {report['rounds']} windows of {report['window_s']:g} s; median (min-max)",
        f"booted (every actor's boot check done) in {report['boot_s']:g} s",
        f"periodic checks/s {s(report['checks_per_s'])}"
        f" (expected {report['expected_checks_per_s']:g}); results {report['periodic_results']}",
        f"service CPU {s(report['cpu_core_pct_at_interval'])} % of one core at this interval;"
        f" {s(report['cpu_ms_per_check'])} ms CPU per check",
        f"Evolution calls (boot included): {report['evolution_calls']}",
        f"projected to a 60 s interval: {s(report['core_pct_at_60s'])} % of one core;"
        f" for 10,000 instances {s(report['core_pct_10000_at_60s'])} %",
    ]
