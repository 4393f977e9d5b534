"""The hub's direct writes to browser sockets (actors/hub.py, http_server.DirectSocket): the
wire form of a frame, frames reaching a socket whole and in order whether written directly or
queued behind a slow reader (partial writes, batches), and a reader that falls too far behind
cut off with 1013 after the frames it could still take, as is a socket whose snapshot the
database cannot give."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from auzap_actors.actors import hub as hub_module
from auzap_actors.actors.hub import Frame, Hub, text_frame
from auzap_actors.bench.subscribers import masked, next_frame
from auzap_actors.serve import Running

from .conftest import ServiceRunner
from .faultdb import FaultPostgres, fault_db_fixture, fault_postgres_fixture  # noqa: F401
from .helpers import user_token


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_a_websocket_client_reads(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte characters: length in bytes
    client = Connection(ConnectionType.CLIENT)  # wsproto's client, past its handshake
    client.receive_data(text_frame(text))
    events = list(client.events())
    assert len(events) == 1 and isinstance(events[0], TextMessage)
    assert events[0].data == text and events[0].message_finished


def test_a_frame_builds_its_wire_bytes_once() -> None:
    frame = Frame(json.dumps({"type": "x", "data": 1}))
    assert frame.wire() is frame.wire()
    assert frame.wire() == text_frame(frame)
    assert json.loads(frame) == {"type": "x", "data": 1}  # still the text to every other use


class Transport:
    """A socket's transport that takes every write whole (DirectWriter)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def send_nowait(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)

    async def send_all(self, data: bytes) -> None:
        self.written.append(data)


def test_one_publish_writes_directly_to_a_bounded_number_of_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publish to a very large organization must not hold the loop for one write per
    socket: past the bound, the frame waits in the socket's queue for its own task."""
    monkeypatch.setattr(hub_module, "DIRECT_WRITES_PER_PUBLISH", 3)
    hub = Hub()
    transports = [Transport() for _ in range(5)]
    with contextlib.ExitStack() as stack:
        subs = [stack.enter_context(hub.subscribe(f"user{n}", "org")) for n in range(5)]
        for sub, transport in zip(subs, transports, strict=True):
            sub.direct = transport
        hub.publish_org("org", "org.message", {"id": 1})
        wire = text_frame(
            json.dumps({"type": "org.message", "data": {"id": 1}}, separators=(",", ":"))
        )
        assert [t.written for t in transports[:3]] == [[wire]] * 3
        assert [t.written for t in transports[3:]] == [[], []]
        assert [sub.pending for sub in subs] == [0, 0, 0, 1, 1]
        queued = subs[4].receive.receive_nowait()
        assert isinstance(queued, Frame) and json.loads(queued)["data"] == {"id": 1}
        # Behind a queued frame nothing is written directly, so the order holds.
        hub.publish_org("org", "org.message", {"id": 2})
        assert transports[3].written == [] and subs[3].pending == 2


def _address(service: Running) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@dataclass
class Client:
    stream: trio.SocketStream
    buf: bytearray = field(default_factory=bytearray)


async def _slow_socket(service: Running, user: uuid.UUID) -> Client:
    """A browser socket over a TCP socket with a small receive window, read only when the
    test says so."""
    host, port = _address(service)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connect: the window
    await sock.connect((host, port))
    client = Client(trio.SocketStream(sock))
    key = base64.b64encode(os.urandom(16)).decode()
    await client.stream.send_all(
        (
            f"GET /ws?token={user_token(user)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    while (end := client.buf.find(b"\r\n\r\n")) < 0:
        client.buf += await client.stream.receive_some(65536)
    assert client.buf.startswith(b"HTTP/1.1 101"), bytes(client.buf[:end])
    del client.buf[: end + 4]
    return client


async def _read_all(client: Client, timeout: float = 20) -> tuple[list[dict[str, Any]], int]:
    """Every text frame until the server's close frame, and the close code."""
    frames: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        while True:
            while (frame := next_frame(client.buf)) is not None:
                opcode, payload = frame
                if opcode == 8:
                    return frames, int.from_bytes(payload[:2], "big")
                if opcode == 1:
                    frames.append(json.loads(payload))  # a torn frame would not parse
            chunk = await client.stream.receive_some(65536)
            assert chunk, "the connection ended without a close frame"
            client.buf += chunk


async def _frames_until(client: Client, kind: str, timeout: float = 20) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        while True:
            while (frame := next_frame(client.buf)) is not None:
                opcode, payload = frame
                if opcode in (9, 10):
                    continue  # hypercorn's keep-alive pings come between frames, whole
                assert opcode == 1, f"unexpected opcode {opcode}"
                frames.append(json.loads(payload))
                if frames[-1]["type"] == kind:
                    return frames
            chunk = await client.stream.receive_some(65536)
            assert chunk, "the connection ended"
            client.buf += chunk


async def test_frames_behind_a_paused_reader_arrive_whole_and_in_order(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    hub = service.actors.hub
    user, other = uuid.uuid4(), uuid.uuid4()
    paused = await _slow_socket(service, user)
    brisk = await _slow_socket(service, other)
    assert (await _frames_until(paused, "snapshot"))[-1]["type"] == "snapshot"
    assert (await _frames_until(brisk, "snapshot"))[-1]["type"] == "snapshot"
    # 200 frames of ~4 KiB: more than the kernel buffers take (the server's is capped at
    # 256 KiB), fewer than the hub's queue of 256 holds, so some frame is cut by a partial
    # write and the rest queue behind it.
    for n in range(200):
        hub.publish_user(str(user), "message", {"n": n, "text": "x" * 4000})
        hub.publish_user(str(other), "message", {"n": n})
        if n % 50 == 49:
            await trio.sleep(0.01)  # the socket's task drains its queue in batches meanwhile
    assert hub.user_backlog(str(user)) > 0, "nothing queued: the test wrote too little"
    # A brisk socket of another user is not held up by the paused one.
    frames = await _frames_until(brisk, "message")
    while len(frames) < 200:
        frames += await _frames_until(brisk, "message")
    assert [f["data"]["n"] for f in frames] == list(range(200))
    # The paused reader reads again: everything, in order, and the pong of a ping sent now
    # comes after the last of them (it queues behind them).
    await paused.stream.send_all(masked(0x1, b'{"type": "ping"}'))
    got = await _frames_until(paused, "pong")
    assert [f["data"]["n"] for f in got[:-1]] == list(range(200))
    assert all(f["data"]["text"] == "x" * 4000 for f in got[:-1])
    assert hub.user_backlog(str(user)) == 0
    # Written directly again once the backlog is gone: nothing queued, even for a moment.
    hub.publish_user(str(user), "message", {"n": 200})
    assert hub.user_backlog(str(user)) == 0
    assert [f["data"]["n"] for f in await _frames_until(paused, "message")] == [200]
    await paused.stream.aclose()
    await brisk.stream.aclose()


async def test_a_reader_too_far_behind_gets_its_frames_in_order_then_1013(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()  # the hub's queue: 256 frames; AUZAP_SEND_TIMEOUT_S 10 s
    hub = service.actors.hub
    user = uuid.uuid4()
    client = await _slow_socket(service, user)
    await _frames_until(client, "snapshot")
    for n in range(600):
        hub.publish_user(str(user), "message", {"n": n, "text": "y" * 4000})
    assert hub.user_subscriber_count(str(user)) == 1  # cut off, still writing what it took
    frames, code = await _read_all(client)
    assert code == 1013
    numbers = [f["data"]["n"] for f in frames]
    assert numbers == list(range(len(numbers))), "a gap or a repeat before the cut"
    assert 256 <= len(numbers) < 600
    await client.stream.aclose()


async def test_a_snapshot_the_database_cannot_give_closes_with_1013(
    fault_postgres: FaultPostgres, fault_db: str, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        runner = ServiceRunner(nursery, fault_db, tmp_path)
        service = await runner.start(AUZAP_DB_ACQUIRE_TIMEOUT_S="1")
        await trio.to_thread.run_sync(fault_postgres.stop)
        try:
            # The token needs no database: the upgrade is accepted, the snapshot fails.
            client = await _slow_socket(service, uuid.uuid4())
            frames, code = await _read_all(client)
            assert (frames, code) == ([], 1013)
            await client.stream.aclose()
        finally:
            await trio.to_thread.run_sync(fault_postgres.start)
        # The browser's reconnection gets its snapshot once the database is back.
        client = await _slow_socket(service, uuid.uuid4())
        assert (await _frames_until(client, "snapshot", timeout=30))[-1]["data"] is None
        await client.stream.aclose()
        await runner.stop()
        nursery.cancel_scope.cancel()
