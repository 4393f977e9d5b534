"""The `fanout` scenario's floor: a bare server that only answers and writes frames, run as its
own process (`python -m auzap_actors.bench.bare_fanout`).

It speaks just enough of what the `fanout` client (`bench.subscribers`) uses: `GET /ws`
upgrades to a WebSocket and sends a snapshot frame; a POST is answered 200 at once, and a POST
to the webhook route then writes one `org.message` text frame carrying the posted event's data
to every socket, one non-blocking write each in one pass, as the service's hub does.  No
database, no parsing beyond the JSON body, no framework: what it measures is what this machine
(its kernel's loopback TCP, Python's write loop, the client reading 1,000 sockets) costs before
any work of the service, so the service's figures can be read against it.

It prints its port on the first line of stdout and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import os
import select
import socket
import sys
from dataclasses import dataclass, field

from ..actors.hub import text_frame
from ..core.views import encode_frame

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"  # RFC 6455 §1.3
WEBHOOK_PATH = b"/api/webhook/whatsapp"
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
MAX_HEAD = 65536


@dataclass
class Connection:
    sock: socket.socket
    inbound: bytearray = field(default_factory=bytearray)
    outbound: bytearray = field(default_factory=bytearray)  # what the kernel did not take yet
    subscriber: bool = False


class BareServer:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.epoll = select.epoll()
        self.epoll.register(listener.fileno(), select.EPOLLIN)
        self.connections: dict[int, Connection] = {}
        self.subscribers: list[Connection] = []

    def serve(self, stop_fd: int) -> None:
        self.epoll.register(stop_fd, select.EPOLLIN)
        while True:
            for fd, events in self.epoll.poll():
                if fd == stop_fd:
                    return
                if fd == self.listener.fileno():
                    self._accept()
                elif events & select.EPOLLOUT:
                    self._flush(self.connections[fd])
                else:
                    self._read(self.connections[fd])

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections[sock.fileno()] = Connection(sock)
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _read(self, conn: Connection) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            self._drop(conn)
            return
        if conn.subscriber:
            return  # the client's pongs and closing frame: nothing to do
        conn.inbound += chunk
        while (request := self._take_request(conn)) is not None:
            self._answer(conn, *request)

    @staticmethod
    def _take_request(conn: Connection) -> tuple[bytes, bytes, dict[bytes, bytes], bytes] | None:
        end = conn.inbound.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.inbound) > MAX_HEAD:
                raise ValueError("a request head over 64 KiB")
            return None
        lines = bytes(conn.inbound[:end]).split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        if len(conn.inbound) < end + 4 + length:
            return None
        body = bytes(conn.inbound[end + 4 : end + 4 + length])
        del conn.inbound[: end + 4 + length]
        return method, target, headers, body

    def _answer(
        self,
        conn: Connection,
        method: bytes,
        target: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
    ) -> None:
        if method == b"GET" and target.startswith(b"/ws"):
            digest = hashlib.sha1(headers[b"sec-websocket-key"] + WEBSOCKET_GUID).digest()
            self._write(
                conn,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + base64.b64encode(digest)
                + b"\r\n\r\n"
                + text_frame(encode_frame("snapshot", None)),
            )
            conn.subscriber = True
            self.subscribers.append(conn)
            return
        self._write(conn, OK)
        if method == b"POST" and target == WEBHOOK_PATH:
            frame = text_frame(encode_frame("org.message", json.loads(body)["data"]))
            for subscriber in self.subscribers:
                self._write(subscriber, frame)

    def _write(self, conn: Connection, data: bytes) -> None:
        if conn.outbound:  # behind already: keep the order
            conn.outbound += data
            return
        try:
            sent = os.write(conn.sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                self._drop(conn)
                return
            raise
        if sent < len(data):
            conn.outbound += data[sent:]
            self.epoll.modify(conn.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, conn: Connection) -> None:
        try:
            sent = os.write(conn.sock.fileno(), conn.outbound)
        except BlockingIOError:
            return
        del conn.outbound[:sent]
        if not conn.outbound:
            self.epoll.modify(conn.sock.fileno(), select.EPOLLIN)

    def _drop(self, conn: Connection) -> None:
        fd = conn.sock.fileno()
        self.epoll.unregister(fd)
        del self.connections[fd]
        if conn.subscriber:
            self.subscribers.remove(conn)
        conn.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auzap_actors.bench.bare_fanout")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, 0), backlog=4096)
    listener.setblocking(False)
    sys.stdout.write(f"{listener.getsockname()[1]}\n")
    sys.stdout.flush()
    BareServer(listener).serve(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
