"""The benchmark command keeps working (its figures are never asserted: benchmarks are run by
hand on a quiet machine, see README "Performance"); what it sends is what the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import pytest

from auzap_actors.bench.bodies import WebhookMix
from auzap_actors.bench.stats import percentile, summary
from auzap_actors.bench.subscribers import next_frame
from tests.conftest import ServiceRunner


def test_the_mix_is_70_25_5_with_10_percent_repeats() -> None:
    mix = WebhookMix(["user_a", "user_b"], run_id="t1")
    bodies = [mix.next_body() for _ in range(20_000)]
    repeats = len(bodies) - len(set(bodies))
    assert 0.08 < repeats / len(bodies) < 0.12
    events = Counter(json.loads(body)["event"] for body in set(bodies))
    unique = sum(events.values())
    assert 0.67 < events["messages.upsert"] / unique < 0.73
    assert 0.22 < events["messages.update"] / unique < 0.28
    assert 0.03 < events["presence.update"] / unique < 0.07
    sizes = sorted(len(body) for body in bodies)
    assert 900 < sizes[len(sizes) // 2] < 1600  # about 1.2 KB, like the envelopes
    instances = Counter(json.loads(body)["instance"] for body in set(bodies))
    assert set(instances) == {"user_a", "user_b"}


def test_two_runs_never_share_a_body() -> None:
    first = {WebhookMix(["user_a"], run_id="r1").next_body() for _ in range(500)}
    second = {WebhookMix(["user_a"], run_id="r2").next_body() for _ in range(500)}
    assert first.isdisjoint(second)


def test_percentiles_and_spread() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


async def test_the_noop_route_exists_only_when_asked_for(runner: ServiceRunner) -> None:
    service = await runner.start()
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{service.url}/_bench/noop", content=b"{}")).status_code == 404
    await runner.stop()
    service = await runner.start(AUZAP_BENCH_NOOP="1")
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{service.url}/_bench/noop", content=b'{"event": "x"}')
    assert answer.status_code == 200
    assert answer.json() == {"accepted": True, "duplicate": False}


def test_bench_ingest_runs_end_to_end_and_prints_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auzap_actors", "bench", "ingest", "--json",
         "--rounds", "1", "--duration", "1", "--concurrency", "2"],
        capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(done.stdout)
    row = report["by_concurrency"]["2"]
    assert row["errors"] == 0
    assert row["noop"]["ok_per_s"]["median"] > 0
    assert row["ingest"]["ok_per_s"]["median"] > 0
    assert report["throughput_ratio"] == row["throughput_ratio"]["median"] > 0
    assert report["machine"]["cpus"] >= 1


def _bench(*args: str, timeout: float = 240) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "auzap_actors", "bench", *args, "--json"],
        capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_bench_actors_hydrates_every_seeded_instance() -> None:
    report = _bench("actors", "--instances", "40", "--rounds", "1", "--settle", "0.5")
    row = report["by_instances"]["40"]
    assert row["instances"] == 40
    assert 0 < row["ready_s"]["median"] <= row["hydrated_s"]["median"]
    assert report["baseline_rss_mib"]["median"] > 0
    assert row["rss_mib"]["median"] > 0


def test_bench_health_counts_periodic_checks_of_open_instances() -> None:
    report = _bench(
        "health", "--instances", "30", "--interval", "1", "--window", "2", "--rounds", "1"
    )
    assert report["instances"] == 30
    assert report["checks_per_s"]["median"] > 0
    assert report["cpu_ms_per_check"]["median"] > 0
    # The simulator holds every seeded instance open: the checks find them open.
    assert report["periodic_results"]["open"] > 0
    assert report["periodic_results"].get("missing", 0) == 0
    # The census answered the healthy instances' checks: a few fetchInstances, not one a check.
    assert report["census"] is True
    census_calls = report["evolution_calls"]["/instance/fetchInstances"]
    assert 0 < census_calls < sum(report["periodic_results"].values()) / 3


def test_bench_fanout_times_a_frame_on_every_socket() -> None:
    report = _bench("fanout", "--sockets", "5", "--rounds", "1", "--posts", "3")
    assert report["sockets"] == 5
    assert report["missing_frames"] == 0
    assert report["frames_per_round"]["median"] == 15  # 3 webhooks x 5 sockets
    assert report["frame_p99_ms"]["median"] >= report["frame_p50_ms"]["median"] > 0
    assert report["noop_p99_ms"]["median"] > 0
    # The same client against the bare server: every frame came, and the floor is the
    # service's acknowledgement plus the bare fan-out.
    assert report["bare_frame_p99_ms"]["median"] >= report["bare_frame_p50_ms"]["median"] > 0
    assert report["floor_p99_ms"] >= report["webhook_ack_p50_ms"]["median"] - 0.01
    assert report["floor_p99_ratio"] > 0


def test_bench_ingest_vs_baseline_runs_the_reference_server() -> None:
    pytest.importorskip("fastapi", reason="the optional `bench` extra")
    report = _bench(
        "ingest", "--vs-baseline", "--rounds", "1", "--duration", "1", "--concurrency", "2"
    )
    row = report["by_concurrency"]["2"]
    assert row["errors"] == 0
    assert row["baseline"]["ok_per_s"]["median"] > 0
    assert report["baseline_ratio"] == row["baseline_ratio"]["median"] > 0


def test_the_socket_reader_splits_server_frames() -> None:
    buf = bytearray()
    long = b"x" * 300
    buf += bytes([0x81, 5]) + b"hello" + bytes([0x81, 126]) + (300).to_bytes(2, "big")
    buf += long + bytes([0x89, 0])
    assert next_frame(buf) == (1, b"hello")
    assert next_frame(buf) == (1, long)
    assert next_frame(buf) == (9, b"")
    assert next_frame(buf) is None
    buf += bytes([0x81, 10]) + b"part"  # incomplete: waits for the rest
    assert next_frame(buf) is None
