"""Answers sent before the request body arrived, on one raw keep-alive TCP connection.

A client that follows HTTP/1.1 (RFC 9112 §9.6) reads the early answer, then: if it says
`Connection: close`, stops sending, closes, and sends its next request on a new connection;
otherwise it finishes the body and sends its next request on the same connection.  Either
way the next request must be answered: before the fix the server kept such a connection open
without ever answering on it again.
"""

from __future__ import annotations

import pytest
import trio

from .conftest import ServiceRunner
from .helpers import WEBHOOK_HEADERS

LIMIT = 1024  # the smallest AUZAP_WEBHOOK_MAX_BYTES allowed
WAIT_S = 5.0
PAUSE_S = 0.5
NEXT_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


class RawHttp:
    """HTTP/1.1 over one TCP connection, byte by byte (no client library to hide reuse)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, url: str) -> RawHttp:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            await self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    async def at_eof(self) -> bool:
        """True once the server has closed its side (whatever it still sent is dropped)."""
        while await self.stream.receive_some(65536):
            pass
        return True


def post_head(length: int, headers: dict[str, str]) -> bytes:
    lines = [
        "POST /api/webhook/whatsapp HTTP/1.1",
        "Host: test",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def early_answer_then_next_request(
    url: str, headers: dict[str, str], length: int, sent: int, status: int
) -> dict[str, str]:
    """POST `sent` of `length` body bytes, read the early answer, then send the next request
    the way an HTTP/1.1 client must; returns the early answer's headers."""
    conn = await RawHttp.connect(url)
    async with conn.stream:
        await conn.stream.send_all(post_head(length, headers) + b"x" * sent)
        with trio.fail_after(WAIT_S):
            early_status, early_headers, _ = await conn.response()
        assert early_status == status
        tokens = {t.strip().lower() for t in early_headers.get("connection", "").split(",")}
        if "close" not in tokens:
            # The server keeps the connection: finish the body, then reuse it.  The rest of a
            # large body comes well after the answer; a pause stands for that (before the fix,
            # a client that finished its body before the server was done answering got away).
            if sent < length:
                await trio.sleep(PAUSE_S)
            await conn.stream.send_all(b"x" * (length - sent) + NEXT_REQUEST)
            answer = None
            with trio.move_on_after(WAIT_S):
                answer = await conn.response()
            assert answer is not None, (
                f"the next request on the same keep-alive connection after a {status} got no "
                f"answer within {WAIT_S} s"
            )
            assert answer[0] == 200
            return early_headers
        # "Connection: close": send nothing more and close our side; the server must then
        # close its own (EOF), not leave the connection hanging.
        await conn.stream.send_eof()
        closed = False
        with trio.move_on_after(WAIT_S):
            closed = await conn.at_eof()
        assert closed, f"the server did not close the connection within {WAIT_S} s"
    fresh = await RawHttp.connect(url)
    async with fresh.stream:
        await fresh.stream.send_all(NEXT_REQUEST)
        with trio.fail_after(WAIT_S):
            assert (await fresh.response())[0] == 200
    return early_headers


@pytest.mark.parametrize(
    ("secret", "length", "status"),
    [
        # 413: a Content-Length over the limit is refused before the body is read.
        (True, 4 * LIMIT, 413),
        # 401: the secret is checked before the body is read.
        (False, LIMIT // 2, 401),
    ],
    ids=["413", "401"],
)
async def test_next_request_is_answered_after_an_early_answer(
    runner: ServiceRunner, secret: bool, length: int, status: int
) -> None:
    service = await runner.start(AUZAP_WEBHOOK_MAX_BYTES=str(LIMIT))
    headers = WEBHOOK_HEADERS if secret else {}
    early = await early_answer_then_next_request(
        service.url, headers, length=length, sent=100, status=status
    )
    assert early["connection"] == "close"


async def test_complete_bodies_keep_the_connection(runner: ServiceRunner) -> None:
    service = await runner.start(AUZAP_WEBHOOK_MAX_BYTES=str(LIMIT))
    # The whole body was sent: the 401 (which never reads it) and the 400 (which does) do not
    # cost the client its connection.
    for headers, status in (({}, 401), (WEBHOOK_HEADERS, 400)):
        answer = await early_answer_then_next_request(
            service.url, headers, length=200, sent=200, status=status
        )
        assert "connection" not in answer
