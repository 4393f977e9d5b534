"""The `fanout` client, run as its own process (`python -m auzap_actors.bench.subscribers`).

It opens one browser socket (`GET /ws?token=`) per token read from stdin (a JSON list: tokens
are secrets, so not on the command line), waits for each socket's snapshot before opening
the next, then, round after round, alternates two requests on one keep-alive connection: a POST
to the no-op route (its latency is the baseline), and a signed `messages.upsert` webhook
carrying a new WhatsApp id, after which it times every socket's `org.message` frame carrying
that id.  A socket counts once, and only for that exact frame (its type and the message's id);
the webhook's figure waits until every socket got it (or `--frame-timeout`, then the sockets
still waiting are `missing_frames`).  All clocks are this process's `time.perf_counter`, so no
clock is compared across processes.

The client is one thread of blocking code around one `epoll` over all sockets: each socket's
bytes are timed when they are read, and every socket ready at once is read before any is
parsed.  The webhook's answer is read before the frames: a frame can only come after the
apply's own transaction, which starts after the row the answer acknowledges has committed,
and any frame that still came first would be timed later than it arrived, never earlier.  On
2 shared cores the client's own cost is part of every figure; a task per socket (trio) spent
about 20 ms of CPU to read 1,000 frames and, sharing the cores with the service, took 45-100
ms to read 1,000 frames a bare server had written in 10-20 ms; this loop reads them in a few
ms (`bench.bare_fanout` measures it against a server that only writes).  The WebSocket side is a
minimal RFC 6455 reader (the server's frames are unmasked; the client sends only pongs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import select
import socket
import sys
import time
from dataclasses import dataclass, field

from .bodies import WebhookMix
from .loadgen import ProtocolError
from .stats import percentile

RECEIVE = 65536
OPEN_TIMEOUT_S = 30.0  # a socket's handshake and snapshot
FRAME_PREFIX = b'{"type":"org.message",'  # core.views.encode_frame's compact form


def next_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """Take the next whole frame off `buf`: (opcode, payload), or None until it is whole."""
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


def masked(opcode: int, payload: bytes) -> bytes:
    """A client's frame (clients must mask, RFC 6455 §5.3); payloads under 126 bytes."""
    mask = secrets.token_bytes(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + data


def _read_head(sock: socket.socket, buf: bytearray) -> bytes:
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(RECEIVE)
        if not chunk:
            raise ProtocolError("connection closed before the answer")
        buf += chunk
    head = bytes(buf[:end])
    del buf[: end + 4]
    return head


def _check_open(frame: tuple[int, bytes]) -> None:
    opcode, payload = frame
    if opcode == 8:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        reason = payload[2:].decode(errors="replace")
        raise ProtocolError(f"the service closed a socket: code {code} {reason!r}")


@dataclass
class Subscriber:
    """One browser socket; `got` is the marker of the last frame it was timed for."""

    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    got: bytes = b""

    @classmethod
    def open(cls, host: str, port: int, token: str) -> Subscriber:
        sock = socket.create_connection((host, port), timeout=OPEN_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        sock.sendall(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        sub = cls(sock)
        status = _read_head(sock, sub.buf).split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ProtocolError(f"upgrade refused: {status.decode(errors='replace')}")
        # Open only once the snapshot is in: the next socket's snapshot query then does not
        # pile up behind this one's (a thousand at once exhaust the service's pool).
        while True:
            frame = next_frame(sub.buf)
            if frame is None:
                chunk = sock.recv(RECEIVE)
                if not chunk:
                    raise ProtocolError("closed before the snapshot")
                sub.buf += chunk
                continue
            _check_open(frame)
            if frame[0] == 1 and frame[1].startswith(b'{"type":"snapshot"'):
                break
        sock.setblocking(False)
        return sub


@dataclass
class Round:
    """The frame being waited for: its marker, when its webhook was sent, who got it."""

    marker: bytes
    sent_at: float
    waiting: int
    latencies: list[float] = field(default_factory=list)


class Fleet:
    """Every socket, read by one epoll loop."""

    def __init__(self) -> None:
        self.by_fd: dict[int, Subscriber] = {}
        self.epoll = select.epoll()

    def add(self, sub: Subscriber) -> None:
        fd = sub.sock.fileno()
        self.by_fd[fd] = sub
        self.epoll.register(fd, select.EPOLLIN)

    def __len__(self) -> int:
        return len(self.by_fd)

    def read(self, until: float, current: Round | None) -> None:
        """Read what arrives until `until`, or until `current` has every socket's frame."""
        while True:
            timeout = max(0.0, until - time.perf_counter())
            events = self.epoll.poll(timeout)
            if not events and timeout == 0:
                return
            # Every ready socket read (and timed) first, then parsed: the parsing of the
            # first sockets must not delay the reading, and so the timing, of the last.
            reads = []
            for fd, _ in events:
                sub = self.by_fd[fd]
                reads.append((sub, sub.sock.recv(RECEIVE), time.perf_counter()))
            for sub, chunk, got_at in reads:
                if not chunk:
                    raise ProtocolError("the service closed a socket")
                sub.buf += chunk
                while (frame := next_frame(sub.buf)) is not None:
                    self._handle(sub, frame, got_at, current)
            if current is not None and not current.waiting:
                return

    @staticmethod
    def _handle(
        sub: Subscriber, frame: tuple[int, bytes], got_at: float, current: Round | None
    ) -> None:
        opcode, payload = frame
        _check_open(frame)
        if opcode == 9:  # ping: answer with a masked pong carrying the same data
            sub.sock.send(masked(0xA, payload))
        elif (
            opcode == 1
            and current is not None
            and sub.got != current.marker
            and payload.startswith(FRAME_PREFIX)
            and current.marker in payload
        ):
            sub.got = current.marker
            current.latencies.append(got_at - current.sent_at)
            current.waiting -= 1

    def close(self) -> None:
        self.epoll.close()
        for sub in self.by_fd.values():
            sub.sock.close()


class Poster:
    """One keep-alive HTTP/1.1 connection for the webhook and no-op POSTs."""

    def __init__(self, host: str, port: int, secret: str) -> None:
        self.host, self.port, self.secret = host, port, secret
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def post(self, path: str, body: bytes) -> float:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nX-Auzap-Webhook-Secret: {self.secret}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        self.sock.sendall(head + body)
        answer = _read_head(self.sock, self.buf)
        lines = answer.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self.buf) < length:
            chunk = self.sock.recv(RECEIVE)
            if not chunk:
                raise ProtocolError("connection closed inside the body")
            self.buf += chunk
        del self.buf[:length]
        elapsed = time.perf_counter() - started
        if status != 200:
            raise ProtocolError(f"{path} answered {status}")
        return elapsed

    def close(self) -> None:
        self.sock.close()


def run(args: argparse.Namespace, tokens: list[str], secret: str) -> dict[str, object]:
    host, port = args.host, args.port
    opened = time.perf_counter()
    fleet = Fleet()
    for token in tokens:  # one handshake at a time: the service is not the thing timed
        fleet.add(Subscriber.open(host, port, token))
        # The sockets already open answer the service's pings meanwhile: a socket that
        # answers none within AUZAP_HTTP_READ_TIMEOUT_S is closed.
        fleet.read(0.0, None)
    open_s = time.perf_counter() - opened
    fleet.read(time.perf_counter() + 1.0, None)  # every snapshot frame in, before timing
    poster = Poster(host, port, secret)
    mix = WebhookMix([args.instance], args.run_id)
    rounds = []
    missing = 0
    try:
        for _ in range(args.rounds):
            frames: list[float] = []
            firsts: list[float] = []
            noops: list[float] = []
            acks: list[float] = []
            for _ in range(args.posts):
                noop_body, _ = mix.upsert(args.instance)
                noops.append(poster.post("/_bench/noop", noop_body))
                body, wa_id = mix.upsert(args.instance)
                current = Round(wa_id.encode(), time.perf_counter(), len(fleet))
                acks.append(poster.post("/api/webhook/whatsapp", body))
                fleet.read(current.sent_at + args.frame_timeout, current)
                missing += current.waiting
                frames += current.latencies
                if current.latencies:
                    firsts.append(min(current.latencies))
                fleet.read(time.perf_counter() + args.gap, None)  # pings answered meanwhile
            rounds.append(_figures(frames, firsts, noops, acks))
    finally:
        poster.close()
        fleet.close()
    return {"sockets": len(tokens), "open_s": round(open_s, 2), "missing_frames": missing,
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
    result = run(args, tokens, secret)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
