"""The load generator, run as its own process (`python -m auzap_actors.bench.loadgen`).

It keeps `concurrency` HTTP/1.1 keep-alive connections busy for `duration` seconds, each sending
the next body of a `WebhookMix` and waiting for the answer, and prints one JSON object: requests,
answers by status, events/s acknowledged (2xx) and latency percentiles.  It speaks HTTP over
trio sockets with prebuilt request heads: an HTTP client library would cost more CPU per request
than the server under test on these 2-core machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from .bodies import WebhookMix
from .stats import percentile


class ProtocolError(Exception):
    pass


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def _read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[int, bool]:
    """Read one response off `stream` (bytes past it stay in `buf`): (status, must_close)."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ProtocolError("connection closed before the answer")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        await _skip_chunked(stream, buf)
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ProtocolError("connection closed inside the body")
            buf += chunk
        del buf[:length]
    return status, headers.get("connection") == "close"


async def _skip_chunked(stream: trio.SocketStream, buf: bytearray) -> None:
    while True:
        while (end := buf.find(b"\r\n")) < 0:
            buf += await stream.receive_some(65536)
        size = int(bytes(buf[:end]).split(b";")[0], 16)
        while len(buf) < end + 2 + size + 2:
            buf += await stream.receive_some(65536)
        del buf[: end + 2 + size + 2]
        if size == 0:
            return


async def _connection(
    host: str, port: int, head: bytes, mix: WebhookMix, deadline: float, tally: Tally
) -> None:
    stream: trio.SocketStream | None = None
    buf = bytearray()
    while time.monotonic() < deadline:
        if stream is None:
            stream = await trio.open_tcp_stream(host, port)
            buf.clear()
        body = mix.next_body()
        request = head + str(len(body)).encode() + b"\r\n\r\n" + body
        started = time.perf_counter()
        try:
            await stream.send_all(request)
            status, must_close = await _read_response(stream, buf)
        except (OSError, trio.BrokenResourceError, ProtocolError):
            tally.errors += 1
            await stream.aclose()
            stream = None
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] += 1
        if must_close:
            await stream.aclose()
            stream = None
    if stream is not None:
        await stream.aclose()


async def run_load(
    url_host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    instances: list[str],
    run_id: str,
    concurrency: int,
    duration: float,
) -> dict[str, object]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\nContent-Type: application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "Content-Length: "
    ).encode()
    mix = WebhookMix(instances, run_id)
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(_connection, url_host, port, head, mix, deadline, tally)
    elapsed = time.monotonic() - started
    ok = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    lat = sorted(tally.latencies)
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "requests": len(lat),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "transport_errors": tally.errors,
        "ok_per_s": round(ok / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auzap_actors.bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--instance", action="append", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    secret = os.environ.get("AUZAP_WEBHOOK_SECRET")
    if secret:  # from the environment: a command line is visible to every user (`ps`)
        headers["X-Auzap-Webhook-Secret"] = secret
    result = trio.run(
        run_load,
        args.host,
        args.port,
        args.path,
        headers,
        args.instance,
        args.run_id,
        args.concurrency,
        args.duration,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
