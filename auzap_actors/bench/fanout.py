"""`bench fanout`: webhook-to-frame latency with many browser sockets subscribed.

One instance belongs to a user of an organization; `--sockets` other members of that
organization (1,000 by default) each hold one browser socket (`GET /ws?token=`) in a separate
client process (`bench.subscribers`).  Each `messages.upsert` webhook that client posts makes
the instance's actor store the message and publish one `org.message` frame to every member's
socket; the client times each frame from the moment it sent the webhook, and times the no-op
route's request on the same connection, alternating with the webhooks (the side-by-side
baseline).  The frame latency includes the whole path: the webhook stored and acknowledged,
the inbox's doorbell, the actor applying the row, the hub's fan-out, and 1,000 socket writes.

Then the same client, sockets and webhooks run against a bare server (`bench.bare_fanout`:
no database, no framework, one write per socket): its frame latency is what this machine's
loopback and the client cost before any work of the service.  The floor reported is the
service's acknowledgement (the event stored durably) plus that bare fan-out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from ..web.auth import mint_user_token
from .scenarios import say
from .stack import _tail, running_stack
from .stats import summary


@dataclass(frozen=True)
class FanoutOptions:
    sockets: int = 1000
    rounds: int = 3
    posts: int = 100  # webhooks per round


def fanout(options: FanoutOptions) -> dict[str, Any]:
    # Each member holds one socket; the node's cap stays above what the run opens.
    env = {"AUZAP_WS_MAX": str(max(10_000, options.sockets + 100))}
    with running_stack(env) as stack:
        org = uuid.uuid4()
        say("opening 1 instance in an organization")
        stack.open_instances(1, organization=org)
        tokens = [
            mint_user_token(stack.jwt_secret, uuid.uuid4(), org) for _ in range(options.sockets)
        ]
        say(f"{options.sockets} sockets subscribing, then {options.rounds} x {options.posts}"
            " webhooks")  # fmt: skip
        try:
            result = _subscribe(stack.port, stack.instances[0], tokens, stack.webhook_secret,
                                options)  # fmt: skip
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc}\nthe service's log ends: {_tail(stack.service_log)}"
            ) from exc
    say(f"the same client against a bare server (no database, no framework): {options.sockets}"
        " sockets, the same webhooks")  # fmt: skip
    bare = _against_bare_server(stack.instances[0], tokens, options)
    rounds = result["rounds"]
    for n, row in enumerate(rounds, 1):
        say(
            f"  round {n}: frame p50 {row['frame_p50_ms']} ms p99 {row['frame_p99_ms']} ms;"
            f" no-op p50 {row['noop_p50_ms']} ms p99 {row['noop_p99_ms']} ms"
        )

    def figure(key: str, source: list[dict[str, Any]] = rounds) -> dict[str, float]:
        return summary([float(row[key]) for row in source])

    p99_ratio = summary([row["frame_p99_ms"] / max(row["noop_p99_ms"], 1e-9) for row in rounds])
    # What the frame's p99 cannot go under here: the service's acknowledgement (the event
    # stored durably, before anything is applied) plus the bare server's fan-out (its frame
    # p99 less its own acknowledgement).
    bare_fan_out = (
        figure("frame_p99_ms", bare["rounds"])["median"]
        - figure("webhook_ack_p50_ms", bare["rounds"])["median"]
    )
    floor_ms = figure("webhook_ack_p50_ms")["median"] + bare_fan_out
    return {
        "scenario": "fanout",
        "sockets": result["sockets"],
        "rounds": options.rounds,
        "posts_per_round": options.posts,
        "sockets_open_s": result["open_s"],
        "missing_frames": result["missing_frames"] + bare["missing_frames"],
        "frames_per_round": figure("frames"),
        "frame_p50_ms": figure("frame_p50_ms"),
        "frame_p99_ms": figure("frame_p99_ms"),
        "frame_max_ms": figure("frame_max_ms"),
        "first_frame_p50_ms": figure("first_frame_p50_ms"),
        "first_frame_p99_ms": figure("first_frame_p99_ms"),
        "noop_p50_ms": figure("noop_p50_ms"),
        "noop_p99_ms": figure("noop_p99_ms"),
        "webhook_ack_p50_ms": figure("webhook_ack_p50_ms"),
        "webhook_ack_p99_ms": figure("webhook_ack_p99_ms"),
        "p99_ratio": p99_ratio["median"],
        "p99_ratio_spread": p99_ratio,
        "bare_frame_p50_ms": figure("frame_p50_ms", bare["rounds"]),
        "bare_frame_p99_ms": figure("frame_p99_ms", bare["rounds"]),
        "bare_first_frame_p99_ms": figure("first_frame_p99_ms", bare["rounds"]),
        "bare_webhook_ack_p50_ms": figure("webhook_ack_p50_ms", bare["rounds"]),
        "floor_p99_ms": round(floor_ms, 2),
        "floor_p99_ratio": round(floor_ms / max(figure("noop_p99_ms")["median"], 1e-9), 2),
    }


def _subscribe(
    port: int, instance: str, tokens: list[str], secret: str, options: FanoutOptions
) -> dict[str, Any]:
    """Run the client process (`bench.subscribers`) against `port`; its JSON result."""
    command = [
        sys.executable, "-m", "auzap_actors.bench.subscribers",
        "--port", str(port), "--instance", instance,
        "--run-id", uuid.uuid4().hex[:8], "--rounds", str(options.rounds),
        "--posts", str(options.posts),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        input=json.dumps(tokens).encode(),
        env={**os.environ, "AUZAP_WEBHOOK_SECRET": secret},
        capture_output=True,
        timeout=600 + options.rounds * options.posts * 12,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the subscribers failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _against_bare_server(
    instance: str, tokens: list[str], options: FanoutOptions
) -> dict[str, Any]:
    """The same client, sockets and webhooks against `bench.bare_fanout`: the floor."""
    server = subprocess.Popen(
        [sys.executable, "-m", "auzap_actors.bench.bare_fanout"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        return _subscribe(port, instance, tokens, "unused", options)
    finally:
        if server.stdin is not None:
            server.stdin.close()  # its signal to stop
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def render(report: dict[str, Any]) -> list[str]:
    def s(key: str) -> str:
        f = report[key]
        return f"{f['median']:.3g} ({f['min']:.3g}-{f['max']:.3g})"

    return [
        f"{report['sockets']} sockets (opened in {report['sockets_open_s']:g} s),"
        f" {report['rounds']} rounds of {report['posts_per_round']} webhooks;"
        f" median (min-max) over rounds; {report['missing_frames']} frames missing",
        f"webhook-to-frame p50 {s('frame_p50_ms')} ms, p99 {s('frame_p99_ms')} ms,"
        f" max {s('frame_max_ms')} ms",
        f"first socket's frame (the apply path) p50 {s('first_frame_p50_ms')} ms,"
        f" p99 {s('first_frame_p99_ms')} ms",
        f"no-op request p50 {s('noop_p50_ms')} ms, p99 {s('noop_p99_ms')} ms;"
        f" webhook acknowledged p50 {s('webhook_ack_p50_ms')} ms",
        f"p99 ratio (frame / no-op) {report['p99_ratio']:.3g}"
        f" ({report['p99_ratio_spread']['min']:.3g}-{report['p99_ratio_spread']['max']:.3g})",
        f"bare server (no database, no framework, the same client): frame p50"
        f" {s('bare_frame_p50_ms')} ms, p99 {s('bare_frame_p99_ms')} ms, first socket p99"
        f" {s('bare_first_frame_p99_ms')} ms, answer p50 {s('bare_webhook_ack_p50_ms')} ms",
        f"floor (the service's acknowledgement + the bare fan-out): p99 {report['floor_p99_ms']:g}"
        f" ms = {report['floor_p99_ratio']:g} x the no-op p99",
    ]
