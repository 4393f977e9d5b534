"""The Evolution client's lean HTTP/1.1 path (evolution/wire.py) against a real HTTP server
(hypercorn, as the simulator is served): kept-alive connections, a server that closes them,
bodies, query strings, a base URL with a path, an answer cut short."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from auzap_actors.evolution import EvolutionClient, EvolutionUnavailable
from auzap_actors.evolution.retry import RetryPolicy
from auzap_actors.evolution.wire import Wire

NO_RETRY = RetryPolicy(attempts=1)


def _app() -> QuartTrio:
    app = QuartTrio("wire-test")

    @app.route("/api/echo/<name>", methods=["GET", "POST"])
    async def echo(name: str) -> Response:
        client = request.scope.get("client") or ("", 0)
        body = await request.get_json(silent=True)
        return jsonify(
            {
                "name": name,
                "port": client[1],
                "args": dict(request.args),
                "body": body,
                "apikey": request.headers.get("apikey"),
            }
        )

    @app.get("/api/closing")
    async def closing() -> Response:
        answer = jsonify({"closing": True})
        answer.headers["Connection"] = "close"
        return answer

    @app.get("/api/slow")
    async def slow() -> Response:
        await trio.sleep(1)
        return jsonify({"slow": True})

    @app.get("/api/missing")
    async def missing() -> Response:
        return jsonify({"status": 404, "response": {"message": ["nope"]}}), 404  # type: ignore[return-value]

    return app


@pytest.fixture
async def base_url(nursery: trio.Nursery) -> str:
    app = _app()
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(hypercorn.trio.serve, app, config)
    return binds[0] + "/api"


async def _echo(wire: Wire, **kw: Any) -> dict[str, Any]:
    answer = await wire.request("GET", "/echo/a%20b", **kw)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


async def test_one_kept_alive_connection_and_a_new_one_after_connection_close(
    base_url: str,
) -> None:
    wire = Wire(base_url, {"apikey": "k"}, connect_timeout=5, tls=None)
    try:
        ports = {(await _echo(wire))["port"] for _ in range(5)}
        assert len(ports) == 1  # kept alive
        closing = await wire.request("GET", "/closing")
        assert closing.json() == {"closing": True}
        after = await _echo(wire)  # the server said close: a new connection, and it works
        assert after["port"] not in ports and after["name"] == "a b"
    finally:
        await wire.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    nursery: trio.Nursery,
) -> None:
    """A server that answers keep-alive, then drops the idle connection (as Evolution's
    proxies do after their idle timeout): the next request goes out on a new connection."""
    served: list[int] = []

    async def handler(stream: trio.SocketStream) -> None:
        served.append(stream.socket.getpeername()[1])
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += await stream.receive_some(4096)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        )
        await stream.aclose()  # no "Connection: close": the client learns it from the socket

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    wire = Wire(f"http://127.0.0.1:{port}", {}, connect_timeout=5, tls=None)
    try:
        for _ in range(3):
            assert (await wire.request("GET", "/x")).json() == {}
            await trio.sleep(0.2)  # the server's close arrives
        assert len(set(served)) == 3
    finally:
        await wire.aclose()


async def test_bodies_query_strings_and_errors_through_the_client(base_url: str) -> None:
    async with EvolutionClient(base_url, "key-1", retry=NO_RETRY) as client:
        body = await client._request(
            "POST",
            "/echo/x",
            json={"webhook": {"enabled": True, "ü": "ß"}},
            params={"instanceName": "a&b"},
            idempotent=True,
        )
        assert body["body"] == {"webhook": {"enabled": True, "ü": "ß"}}
        assert body["args"] == {"instanceName": "a&b"}
        assert body["apikey"] == "key-1"
        with pytest.raises(Exception) as refused:
            await client._request("GET", "/missing", idempotent=True)
        assert refused.value.status == 404  # type: ignore[attr-defined]
        assert "nope" in str(refused.value)


async def test_an_answer_cut_short_does_not_spoil_the_next_request(base_url: str) -> None:
    async with EvolutionClient(base_url, "k", retry=NO_RETRY, timeout=0.2, lanes=1) as client:
        with pytest.raises(EvolutionUnavailable) as slow:
            await client._request("GET", "/slow", idempotent=True)
        assert "timed out" in str(slow.value)
        body = await client._request("GET", "/echo/y", idempotent=True)
        assert body["name"] == "y"


async def test_nobody_listening_is_a_connect_error_nothing_sent() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    wire = Wire(f"http://127.0.0.1:{port}", {}, connect_timeout=1, tls=None)
    with pytest.raises(httpx.ConnectError):
        await wire.request("GET", "/x")
