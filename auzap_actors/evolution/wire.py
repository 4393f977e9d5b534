"""One kept-alive HTTP/1.1 connection to Evolution, spoken with h11 over a trio stream: the
Evolution client's lean request path.

Why not httpx here: a health check is one small GET, and httpx's layers (request building,
auth and redirect handling, httpcore's pool, the response stream wrappers) cost about three
times the exchange itself in CPU (`auzap-actors bench health`: ~0.8 ms of the service's CPU
per call through httpx, ~0.25 ms like this).  httpx stays the path for a test's mock
transport and for a service behind an HTTP proxy (lanes.py chooses).

Failures are raised as httpx's transport errors, so the client maps them as before: a
failed connect is `ConnectError` (nothing sent), anything after it `ReadError`,
`WriteError` or `RemoteProtocolError` (the request may have arrived).
"""

from __future__ import annotations

import json as jsonlib
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import h11
import httpx
import trio

# An answer larger than this is not one Evolution gives to this service (fetchInstances of
# one instance is a few KB; of all of them, ~1 KB per instance).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Answer:
    """The part of a response the client reads (the same names as httpx.Response's)."""

    status_code: int
    reason_phrase: str
    content: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def proxied(base_url: str) -> bool:
    """Whether the environment sends requests to this URL through a proxy (HTTP_PROXY and
    the like, which httpx honours; the lean wire does not speak to proxies)."""
    url = urlsplit(base_url)
    proxies = getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass(url.hostname or "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class Wire:
    """One connection, opened on first use and again after the server closed it; used by one
    request at a time (its lane holds it)."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme in {base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        default_port = self._port == (443 if self._https else 80)
        authority = self._host if default_port else f"{self._host}:{self._port}"
        self._headers = [("host", authority), *headers.items(), ("accept", "application/json")]
        self._connect_timeout = connect_timeout
        self._tls = tls
        self._stream: trio.abc.Stream | None = None
        self._conn: h11.Connection | None = None

    async def _open(self) -> trio.abc.Stream:
        try:
            with trio.fail_after(self._connect_timeout):
                stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
                if self._https:
                    assert self._tls is not None
                    tls = trio.SSLStream(stream, self._tls, server_hostname=self._host)
                    await tls.do_handshake()
                    stream = tls
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return stream

    def _reusable(self) -> bool:
        """A kept-alive connection the server has not closed meanwhile (it would be readable:
        an idle server sends nothing but its FIN)."""
        stream, conn = self._stream, self._conn
        if stream is None or conn is None or conn.our_state is not h11.IDLE:
            return False
        sock = getattr(stream, "socket", None)
        if sock is None:  # TLS: its transport's socket
            sock = getattr(getattr(stream, "transport_stream", None), "socket", None)
        return sock is not None and not sock.is_readable()

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> Answer:
        if not self._reusable():
            await self.aclose()
            self._stream = await self._open()
            self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_CHUNK * 4)
        stream, conn = self._stream, self._conn
        assert stream is not None and conn is not None
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = list(self._headers)
        body = b""
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        elif method in ("POST", "PUT", "PATCH"):
            headers.append(("content-length", "0"))
        try:
            data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            await self.aclose()
            raise httpx.LocalProtocolError(str(exc)) from exc
        try:
            await stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self.aclose()
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer = await self._receive(stream, conn)
        except BaseException:
            await self.aclose()  # a half-read answer (or a cancelled one) ruins the connection
            raise
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.aclose()
        return answer

    async def _receive(self, stream: trio.abc.Stream, conn: h11.Connection) -> Answer:
        status, reason, parts, size = 0, "", [], 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is h11.NEED_DATA:
                try:
                    chunk = await stream.receive_some(_CHUNK)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc
                if not chunk and conn.their_state is h11.SEND_RESPONSE:
                    raise httpx.RemoteProtocolError("server disconnected without an answer")
                conn.receive_data(bytes(chunk))
            elif isinstance(event, h11.Response):
                status = event.status_code
                reason = event.reason.decode("latin-1") or _phrase(status)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_ANSWER_BYTES:
                    raise httpx.RemoteProtocolError(f"answer over {MAX_ANSWER_BYTES} bytes")
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, reason, b"".join(parts))
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("server closed the connection mid-answer")
            # InformationalResponse (1xx): the real answer follows.

    async def aclose(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
