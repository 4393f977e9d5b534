"""hypercorn's trio worker, with the bounds hypercorn 0.18 does not have.

`serve_http` does what `hypercorn.trio.serve` does for plain-HTTP binds (lifespan, one
`TCPServer` per connection, graceful shutdown) plus:

- a cap on open connections (`max_connections`): hypercorn only has `backlog`, the kernel's
  queue of connections not yet accepted, and `max_requests`, which restarts a worker after that
  many requests, not a limit.  A connection over the cap gets a canned 503 and is closed;
- a timeout on every write to a client (`BoundedStream`): hypercorn writes inside a shielded
  cancel scope, so a client that stops reading (its TCP window full) held the writing task,
  a browser socket's handler included, for as long as the client lived.  A write that takes
  longer than `send_timeout_s` now resets the connection, and hypercorn tears the exchange down
  as for any lost client;
- a direct way to a WebSocket connection's transport (`DirectSocket`, in the scope's
  extensions under DIRECT_SOCKET): the hub writes an already-encoded frame to 1,000 sockets
  in one pass of non-blocking writes, where hypercorn's path costs each socket a task wake-up,
  wsproto, and several scheduler round trips (the `fanout` bench's profile);
- a capped kernel send buffer per connection (SEND_BUFFER_BYTES) instead of autotuning up to
  `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) for every client that reads slowly.

TLS and QUIC binds are not handled (the service binds plain HTTP; TLS ends in front of it).
This builds on hypercorn's own pieces (`TCPServer`, `WorkerContext`, `Lifespan`): check them
when upgrading hypercorn.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveCallable,
    ASGISendCallable,
    ConnectionState,
    Framework,
    LifespanState,
    Scope,
)
from hypercorn.utils import repr_socket_addr, wrap_app

from .actors.hub import DIRECT_SOCKET

log = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 256 * 1024  # the kernel doubles it for its bookkeeping
REFUSAL_GRACE_S = 1.0
REFUSAL_LOG_EVERY_S = 10.0
_REFUSAL_BODY = (
    b'{"error": {"code": "too_many_connections", '
    b'"message": "The server has too many open connections; retry shortly."}}'
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    send_timeout_s: float


class BoundedStream(trio.abc.HalfCloseableStream):
    """A client connection whose every `send_all` must finish within `send_timeout_s`.

    The timeout is a cancel scope of its own inside `send_all`, so it fires even though
    hypercorn shields the call.  On expiry the socket is reset (SO_LINGER 0: the kernel drops
    what it still held for that client) and BrokenResourceError is raised, which hypercorn
    treats as a lost client; its reading task sees the closed socket too.  hypercorn reads
    `.socket` for the addresses; having no `do_handshake` marks the stream as plain TCP to it.
    """

    def __init__(self, inner: trio.SocketStream, send_timeout_s: float) -> None:
        self._inner = inner
        self.socket = inner.socket
        self.send_timeout_s = send_timeout_s
        self.timed_out = False

    def __repr__(self) -> str:
        return f"<BoundedStream send_timeout={self.send_timeout_s}s timed_out={self.timed_out}>"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(self.send_timeout_s):
            await self._inner.send_all(data)
            return
        self.timed_out = True
        self.abort()
        raise trio.BrokenResourceError(f"the client read nothing for {self.send_timeout_s} s")

    def abort(self) -> None:
        """Reset the connection now, whatever is still unsent."""
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed
        # Closing a trio socket wakes the tasks blocked on it with ClosedResourceError.
        self.socket.close()

    def send_nowait(self, data: bytes) -> int:
        """Write what the kernel takes right now, without waiting: the number of bytes
        written, 0 when none could be (buffer full, connection gone or timed out).  The
        caller must know no other write is in progress (see DirectSocket)."""
        # The socket object owns the descriptor and marks itself closed (-1) when closed, so
        # checking it here, with no await before the write, never writes to a reused number.
        fd = self.socket.fileno()
        if fd < 0 or self.timed_out:
            return 0
        try:
            return os.write(fd, data)
        except OSError:
            # Would block, or the client is gone: the awaited writes and hypercorn's reader
            # find out and end the connection.
            return 0

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


class DirectSocket:
    """A WebSocket handler's own way to its connection: writes of frames it encoded itself,
    serialised with hypercorn's writes by hypercorn's per-connection send lock (TCPServer's
    `send_lock`, which hypercorn holds around every write), so bytes never interleave.

    Only data frames that wsproto's state does not track go this way (unmasked text frames,
    uncompressed even when permessage-deflate was agreed); the handshake, pings, pongs and
    the closing handshake stay hypercorn's."""

    def __init__(self, stream: BoundedStream) -> None:
        self._stream = stream
        self._lock: trio.Lock | None = None  # hypercorn's, once its TCPServer exists
        self.broken = False

    def attach(self, lock: trio.Lock) -> None:
        self._lock = lock

    def send_nowait(self, data: bytes) -> int:
        lock = self._lock
        if lock is None or lock.locked() or self.broken:
            return 0
        return self._stream.send_nowait(data)

    async def send_all(self, data: bytes) -> None:
        lock = self._lock
        if lock is None or self.broken:
            return
        # Shielded like hypercorn's own writes: a write cut halfway would leave half a frame
        # before the closing frame.  BoundedStream's timeout still ends a stuck write.
        with trio.CancelScope(shield=True):
            async with lock:
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    # A lost client, as hypercorn treats it: its reader sees the socket end.
                    self.broken = True


class _WithDirectSocket:
    """hypercorn's app wrapper for one connection: its WebSocket scopes carry the
    connection's DirectSocket."""

    def __init__(self, app: AppWrapper, direct: DirectSocket) -> None:
        self._app = app
        self._direct = direct

    async def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        # HTTP/1.1 only: a WebSocket over HTTP/2 (RFC 8441) shares the connection with other
        # streams inside HTTP/2 frames, where raw bytes must never go.
        if scope["type"] == "websocket" and scope.get("http_version") == "1.1":
            # ASGI types extension values as dicts; this one is an object the handler knows.
            extensions: dict[str, Any] = {**(scope.get("extensions") or {})}
            extensions[DIRECT_SOCKET] = self._direct
            scope["extensions"] = extensions
        await self._app(scope, receive, send, sync_spawn, call_soon)


class ConnectionGate:
    """Counts the open connections and serves each through hypercorn, or refuses it."""

    def __init__(
        self,
        app: Any,
        config: Config,
        context: WorkerContext,
        state: ConnectionState,
        limits: HttpLimits,
    ) -> None:
        self._app = app
        self._config = config
        self._context = context
        self._state = state
        self.limits = limits
        self.active = 0
        self.refused = 0
        self._logged_refusals = 0
        self._last_log = -REFUSAL_LOG_EVERY_S

    def __repr__(self) -> str:
        return (
            f"<ConnectionGate active={self.active}/{self.limits.max_connections} "
            f"refused={self.refused}>"
        )

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.active >= self.limits.max_connections:
            self.refused += 1
            self._log_refusals()
            await _refuse(stream)
            return
        self.active += 1
        try:
            try:
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass  # the client is already gone; hypercorn will find out
            bounded = BoundedStream(stream, self.limits.send_timeout_s)
            direct = DirectSocket(bounded)
            app = _WithDirectSocket(self._app, direct)
            server = TCPServer(app, self._config, self._context, self._state, bounded)  # type: ignore[arg-type]
            direct.attach(server.send_lock)
            await server
        finally:
            self.active -= 1

    def _log_refusals(self) -> None:
        # One line per interval, not one per refused connection: a flood must not flood the log.
        now = trio.current_time()
        if now - self._last_log >= REFUSAL_LOG_EVERY_S:
            log.warning(
                "refused %d connection(s): %d open, the limit is %d (AUZAP_HTTP_MAX_CONNECTIONS)",
                self.refused - self._logged_refusals,
                self.active,
                self.limits.max_connections,
            )
            self._last_log = now
            self._logged_refusals = self.refused


async def _refuse(stream: trio.SocketStream) -> None:
    """Answer 503 without reading the request, then close.  What the client already sent is
    read and dropped first, briefly: closing over unread bytes would reset the connection, and
    the client could lose the answer."""
    with trio.move_on_after(REFUSAL_GRACE_S):
        try:
            await stream.send_all(REFUSAL)
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await stream.aclose()


async def serve_http(
    app: Framework,
    config: Config,
    limits: HttpLimits,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `config.bind` until `shutdown_trigger` returns; `task_status.started`
    gets the bound URLs.  At shutdown, open connections get `config.graceful_timeout`."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    # No request budget: `max_requests` would stop this server, not limit it.
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            if sockets.secure_sockets or sockets.quic_sockets:
                raise ValueError("serve_http serves plain HTTP binds only")
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            gate = ConnectionGate(
                wrapped, config, context, ConnectionState(lifespan_state.copy()), limits
            )
            task_status.started(binds)
            try:
                async with trio.open_nursery() as accepting:
                    serve = partial(trio.serve_listeners, handler_nursery=connections)
                    accepting.start_soon(serve, gate.handle, listeners)
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
