"""The `fanout` client, run as its own process (`python -m auzap_actors.bench.subscribers`).

It opens one browser socket (`GET /ws?token=`) per token read from stdin (a JSON list: tokens
are secrets, so not on the command line), waits for each socket's first frame (the snapshot),
then, round after round, alternates two requests on one keep-alive connection: a POST to the
no-op route (its latency is the baseline), and a signed `messages.upsert` webhook carrying a
new WhatsApp id, after which it times every socket's frame carrying that id (the
`org.message` each member of the organization gets).  All clocks are this process's
`time.perf_counter`, so no clock is compared across processes.

The WebSocket client is a minimal RFC 6455 reader over trio sockets (the server's frames are
unmasked; the client never sends data): a full client library would spend more CPU per frame
than the server under test, and 1,000 sockets share this process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field

import trio

from .bodies import WebhookMix
from .loadgen import ProtocolError, _read_response
from .stats import percentile


@dataclass
class Expect:
    """The id the next frames must carry, and when its webhook was sent."""

    marker: bytes = b"\x00"
    sent_at: float = 0.0
    waiting: int = 0
    latencies: list[float] = field(default_factory=list)
    all_in: trio.Event = field(default_factory=trio.Event)


class Socket:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def handshake(self, host: str, port: int, token: str) -> None:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        await self.stream.send_all(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ProtocolError("closed during the handshake")
            self.buf += chunk
        status = bytes(self.buf[:end]).split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ProtocolError(f"upgrade refused: {status.decode(errors='replace')}")
        del self.buf[: end + 4]

    async def frames(self, expect: list[Expect]) -> None:
        """Read frames until the server closes; a text frame carrying the current marker is
        timed (the time is taken when its bytes arrived, before any parsing)."""
        while True:
            got_at = time.perf_counter()
            while (frame := self._next_frame()) is not None:
                opcode, payload = frame
                if opcode == 8:
                    return
                if opcode == 9:  # ping: answer with a masked pong carrying the same data
                    await self.stream.send_all(_masked(0xA, payload))
                elif opcode == 1:
                    current = expect[0]
                    if current.marker in payload:
                        current.latencies.append(got_at - current.sent_at)
                        current.waiting -= 1
                        if current.waiting == 0:
                            current.all_in.set()
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return
            self.buf += chunk

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        opcode, length, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, at = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + length:
            return None
        payload = bytes(buf[at : at + length])
        del buf[: at + length]
        return opcode, payload


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = secrets.token_bytes(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + data


@dataclass
class Poster:
    """One keep-alive HTTP/1.1 connection for the webhook and no-op POSTs."""

    stream: trio.SocketStream
    host: str
    port: int
    secret: str
    buf: bytearray = field(default_factory=bytearray)

    async def post(self, path: str, body: bytes) -> float:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nX-Auzap-Webhook-Secret: {self.secret}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        await self.stream.send_all(head + body)
        status, _ = await _read_response(self.stream, self.buf)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise ProtocolError(f"{path} answered {status}")
        return elapsed


async def run(args: argparse.Namespace, tokens: list[str], secret: str) -> dict[str, object]:
    host, port = args.host, args.port
    expect = [Expect()]
    sockets: list[Socket] = []
    opened = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def open_one(token: str, *, task_status: trio.TaskStatus[None]) -> None:
            sock = Socket(await trio.open_tcp_stream(host, port))
            await sock.handshake(host, port, token)
            sockets.append(sock)
            task_status.started()
            await sock.frames(expect)

        for token in tokens:  # one handshake at a time: the service is not the thing timed
            await nursery.start(open_one, token)
        open_s = time.perf_counter() - opened
        await trio.sleep(1.0)  # every snapshot frame in, before the first timed post
        poster = Poster(await trio.open_tcp_stream(host, port), host, port, secret)
        mix = WebhookMix([args.instance], args.run_id)
        rounds = []
        missing = 0
        for _ in range(args.rounds):
            frames: list[float] = []
            firsts: list[float] = []
            noops: list[float] = []
            acks: list[float] = []
            for _ in range(args.posts):
                noop_body, _ = mix.upsert(args.instance)
                noops.append(await poster.post("/_bench/noop", noop_body))
                body, wa_id = mix.upsert(args.instance)
                current = Expect(wa_id.encode(), time.perf_counter(), len(sockets))
                expect[0] = current
                current.sent_at = time.perf_counter()
                acks.append(await poster.post("/api/webhook/whatsapp", body))
                with trio.move_on_after(args.frame_timeout):
                    await current.all_in.wait()
                missing += current.waiting
                frames += current.latencies
                if current.latencies:
                    firsts.append(min(current.latencies))
                await trio.sleep(args.gap)
            rounds.append(_figures(frames, firsts, noops, acks))
        await poster.stream.aclose()
        nursery.cancel_scope.cancel()
    return {"sockets": len(sockets), "open_s": round(open_s, 2), "missing_frames": missing,
            "rounds": rounds}  # fmt: skip


def _figures(
    frames: list[float], firsts: list[float], noops: list[float], acks: list[float]
) -> dict[str, float]:
    frames, firsts = sorted(frames), sorted(firsts)
    noops, acks = sorted(noops), sorted(acks)
    ms = 1000.0
    return {
        "frames": len(frames),
        "frame_p50_ms": round(percentile(frames, 50) * ms, 2),
        "frame_p99_ms": round(percentile(frames, 99) * ms, 2),
        "frame_max_ms": round((frames[-1] if frames else 0.0) * ms, 2),
        # The first socket's frame of each webhook: the apply path without the fan-out.
        "first_frame_p50_ms": round(percentile(firsts, 50) * ms, 2),
        "first_frame_p99_ms": round(percentile(firsts, 99) * ms, 2),
        "noop_p50_ms": round(percentile(noops, 50) * ms, 2),
        "noop_p99_ms": round(percentile(noops, 99) * ms, 2),
        "webhook_ack_p50_ms": round(percentile(acks, 50) * ms, 2),
        "webhook_ack_p99_ms": round(percentile(acks, 99) * ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auzap_actors.bench.subscribers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=100, help="webhooks per round")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between posts")
    parser.add_argument("--frame-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    tokens = json.load(sys.stdin)
    secret = os.environ["AUZAP_WEBHOOK_SECRET"]
    result = trio.run(run, args, tokens, secret)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
