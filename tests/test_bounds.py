"""Bounded resources (DESIGN principle 4, security rules): browser sockets per user and per
node, clients that stop reading, idle and surplus HTTP connections, body limits per route, and
waits for a pool connection."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import uuid
from pathlib import Path

import psutil
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    connect_websocket_url,
    open_websocket_url,
)

from auzap_actors.config import ConfigError
from auzap_actors.serve import Running
from auzap_actors.store.db import open_pool
from auzap_actors.store.faults import is_transient

from .conftest import ServiceRunner, make_settings
from .helpers import WEBHOOK_HEADERS, auth, eventually, http, next_frame, socket_url, user_token
from .payloads import envelope

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
MIB = 1024 * 1024


def _address(service: Running) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _read_until_eof(stream: trio.SocketStream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass  # a reset is a close too
    return data


def _rss() -> int:
    gc.collect()
    return int(psutil.Process(os.getpid()).memory_info().rss)


# ---- browser sockets -------------------------------------------------------------------------


async def test_a_user_keeps_at_most_the_cap_the_oldest_socket_goes_first(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()  # AUZAP_WS_PER_USER: 5 by default
    user = uuid.uuid4()
    sockets: list[WebSocketConnection] = []
    async with trio.open_nursery() as nursery:
        for n in range(50):
            ws = await connect_websocket_url(nursery, socket_url(service, user_token(user)))
            sockets.append(ws)
            assert (await next_frame(ws))["type"] == "snapshot"
            if n < 5:
                continue
            # The sixth socket evicted exactly the oldest one still open, and only it.
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                await sockets[n - 5].get_message()
            assert closed.value.reason.code == 4409
            assert closed.value.reason.reason == "too many sockets for this user"
            assert all(s.closed is None for s in sockets[n - 4 :])
        assert [s.closed.code if s.closed else None for s in sockets] == [4409] * 45 + [None] * 5
        hub = service.actors.hub
        assert hub.user_subscriber_count(str(user)) == 5
        assert hub.evicted == 45
        for ws in sockets[45:]:  # the survivors still get their frames
            hub.publish_user(str(user), "presence", {"n": 1})
            assert (await next_frame(ws))["type"] == "presence"
        for ws in sockets:
            await ws.aclose()


async def test_the_node_refuses_sockets_over_its_cap_before_the_upgrade(
    runner: ServiceRunner,
) -> None:
    service = await runner.start(AUZAP_WS_MAX="3")
    hub = service.actors.hub
    async with trio.open_nursery() as nursery:
        sockets = [
            await connect_websocket_url(nursery, socket_url(service, user_token(uuid.uuid4())))
            for _ in range(3)
        ]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(socket_url(service, user_token(uuid.uuid4()))):
                pass
        assert rejected.value.status_code == 503
        assert dict(rejected.value.headers or [])[b"retry-after"] == b"5"
        assert json.loads(rejected.value.body or b"")["error"]["code"] == "too_many_sockets"
        assert hub.refused == 1
        await sockets.pop().aclose()
        await eventually(lambda: hub.open_sockets == 2)
        sockets.append(
            await connect_websocket_url(nursery, socket_url(service, user_token(uuid.uuid4())))
        )
        assert (await next_frame(sockets[-1]))["type"] == "snapshot"
        for ws in sockets:
            await ws.aclose()


async def _socket_that_never_reads(service: Running, user: uuid.UUID) -> trio.SocketStream:
    """A WebSocket upgraded by hand on a TCP socket with a tiny receive window; after the
    101's head, nothing is ever read from it again."""
    host, port = _address(service)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    await sock.connect((host, port))
    stream = trio.SocketStream(sock)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?token={user_token(user)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send_all(request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += await stream.receive_some(1)  # byte by byte: no frame gets read
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


async def test_sockets_that_stop_reading_are_closed_and_memory_stays_flat(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()  # AUZAP_SEND_TIMEOUT_S: 10 s by default
    hub = service.actors.hub
    users = [uuid.uuid4() for _ in range(20)]
    # Warm up (first socket, first frames) before the baseline.
    async with trio.open_nursery() as nursery:
        warm = await connect_websocket_url(nursery, socket_url(service, user_token(uuid.uuid4())))
        await next_frame(warm)
        await warm.aclose()
    before = _rss()
    streams = [await _socket_that_never_reads(service, user) for user in users]
    await eventually(lambda: all(hub.user_subscriber_count(str(u)) == 1 for u in users))
    started = trio.current_time()
    peak = before
    published = 0
    # About 1 KiB per frame, 3,000 per socket: far more than the kernel buffers on both
    # sides (the server's is capped) and the hub's queue of 256 can hold.
    for _round in range(30):
        for user in users:
            for n in range(100):
                hub.publish_user(str(user), "message", {"n": n, "text": "x" * 1000})
                published += 1
        peak = max(peak, _rss())
        await trio.sleep(0.05)
    closed_after: float | None = None
    with trio.move_on_after(30 - (trio.current_time() - started)):
        await eventually(lambda: hub.subscriber_count == 0, timeout=30)
        closed_after = trio.current_time() - started
    after = _rss()
    print(
        f"\n{published} frames to {len(users)} sockets that never read: all closed after "
        f"{closed_after if closed_after is None else round(closed_after, 1)} s; RSS before "
        f"{before / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, after {after / MIB:.1f} MiB "
        f"({(after - before) / MIB:+.1f} MiB)"
    )
    assert closed_after is not None, "sockets that stopped reading were still open after 30 s"
    assert hub.open_sockets == 0
    for stream in streams:  # the client sees its connection end (reset or EOF)
        with trio.fail_after(5):
            await _read_until_eof(stream)
        await stream.aclose()
    assert peak - before < 100 * MIB
    assert after - before < 50 * MIB


# ---- HTTP connections ------------------------------------------------------------------------


async def test_an_idle_keep_alive_connection_is_closed(runner: ServiceRunner) -> None:
    service = await runner.start(AUZAP_HTTP_KEEP_ALIVE_S="1")
    stream = await trio.open_tcp_stream(*_address(service))
    async with stream:
        await stream.send_all(HEALTHZ)
        started = trio.current_time()
        data = None
        with trio.move_on_after(6):
            data = await _read_until_eof(stream)
        waited = trio.current_time() - started
        print(f"\nidle keep-alive connection closed: {data is not None}, after {waited:.2f} s")
        assert data is not None, "the server kept an idle keep-alive connection open"
        assert data.startswith(b"HTTP/1.1 200")
        assert 0.8 < waited < 4


async def _healthz(stream: trio.SocketStream) -> bytes:
    await stream.send_all(HEALTHZ)
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    return data


async def test_connections_over_the_cap_get_503(runner: ServiceRunner) -> None:
    # The held connections must stay idle-open while the fifth is refused; a connection the
    # client closed still counts until hypercorn's keep-alive timer ends its task.
    service = await runner.start(
        AUZAP_HTTP_MAX_CONNECTIONS="4", AUZAP_WS_MAX="2", AUZAP_HTTP_KEEP_ALIVE_S="3"
    )
    held = [await trio.open_tcp_stream(*_address(service)) for _ in range(4)]
    for stream in held:  # answered: accepted and kept alive
        assert (await _healthz(stream)).startswith(b"HTTP/1.1 200")
    async with http(service.url) as client:
        answer = await client.get("/healthz")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "too_many_connections"
        await held.pop().aclose()

        async def served() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await eventually(served, timeout=10, interval=0.2)
    for stream in held:
        await stream.aclose()


# ---- body limits -----------------------------------------------------------------------------


async def _post_chunked(
    service: Running, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked on a raw connection; the answer's status and body."""
    stream = await trio.open_tcp_stream(*_address(service))
    async with stream:
        lines = [f"POST {path} HTTP/1.1", "Host: test", "Transfer-Encoding: chunked"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(rest) < length:
                rest += await stream.receive_some(65536)
        return int(head.split()[1]), rest[:length]


async def test_the_user_api_takes_small_bodies_webhooks_large_ones(runner: ServiceRunner) -> None:
    service = await runner.start()  # AUZAP_API_MAX_BYTES: 64 KiB by default
    token = user_token(uuid.uuid4())
    big_text = "x" * (100 * 1024)
    async with http(service.url) as client:
        answer = await client.post(
            "/api/whatsapp/messages",
            json={"to": "5511987650000", "text": big_text},
            headers=auth(token),
        )
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["code"] == "request_entity_too_large"
        assert "65536 bytes" in error["message"]

        # No Content-Length: the body's own limit stops it as it arrives.
        chunks = [b'{"to": "5511987650000", "text": "', *[b"x" * 1024] * 100, b'"}']
        status, body = await _post_chunked(
            service,
            "/api/whatsapp/messages",
            {**auth(token), "Content-Type": "application/json"},
            chunks,
        )
        assert status == 413, body
        assert json.loads(body)["error"]["code"] == "request_entity_too_large"

        event = envelope("messages.upsert", "user_unknown", {"key": {"id": "X"}, "pad": big_text})
        answer = await client.post("/api/webhook/whatsapp", json=event, headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] is True


# ---- the pool --------------------------------------------------------------------------------


async def test_a_pool_wait_times_out_as_a_transient_error(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1, acquire_timeout_s=0.3) as pool:
        async with pool.acquire() as held:
            started = trio.current_time()
            with pytest.raises(TimeoutError) as caught:
                await pool.fetchval("SELECT 1")
            waited = trio.current_time() - started
            assert 0.25 < waited < 2
            assert is_transient(caught.value)
            assert await held.fetchval("SELECT 2") == 2  # the holder is unharmed
        # Released: nothing leaked, the pool serves again.
        assert await pool.fetchval("SELECT 3") == 3


# ---- settings --------------------------------------------------------------------------------


def test_the_socket_cap_must_stay_under_the_connection_cap(tmp_path: Path) -> None:
    settings = make_settings("postgresql://x@/y", tmp_path)
    assert (settings.ws_per_user, settings.ws_max) == (5, 10000)
    assert (settings.api_max_bytes, settings.send_timeout_s) == (64 * 1024, 10.0)
    with pytest.raises(ConfigError, match="AUZAP_WS_MAX"):
        make_settings("postgresql://x@/y", tmp_path, AUZAP_HTTP_MAX_CONNECTIONS="100")
    with pytest.raises(ConfigError, match="AUZAP_WS_PER_USER"):
        make_settings("postgresql://x@/y", tmp_path, AUZAP_WS_PER_USER="0")
