"""How the browser socket (`/ws`, web/ws.py) ends, as the operator's log sees it: a bug after the
upgrade is logged once at error level with its traceback (by the app's catch-all error handler,
web/app.py, which quart also calls for websocket routes), never with the token, and the browser
hears 1011; a client frame nested deeper than the JSON decoder can follow is skipped like any
invalid frame; a client that goes away, or a shutdown under an open socket, logs no error.

A bug cannot be produced on purpose through the interface (each one found is fixed): the test
replaces the socket's opening step, which runs after the upgrade, with one that raises."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from auzap_actors.web import ws as ws_module

from .conftest import ServiceRunner, make_settings
from .helpers import eventually, frames_until_pong, next_frame, socket_url, user_token
from .test_logs import captured_logs

NOISY = ("warning", "error", "critical")


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def _server_close_code(ws: WebSocketConnection, timeout: float = 10) -> int | None:
    """Reads until the server closes the socket; the code its close frame carried."""
    with trio.fail_after(timeout):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            return closed.reason.code


async def test_a_bug_after_the_upgrade_is_logged_once_and_closes_with_1011(
    runner: ServiceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def opening_with_a_bug(*_: Any) -> None:
        raise RuntimeError("injected bug after the upgrade")

    monkeypatch.setattr(ws_module, "_send_opening", opening_with_a_bug)
    settings = make_settings(runner.database_url, runner.tmp_path, AUZAP_LOG_FORMAT="json")
    with captured_logs(settings) as stream:
        service = await runner.start(AUZAP_LOG_FORMAT="json")
        user = uuid.uuid4()
        token = user_token(user)
        async with open_websocket_url(socket_url(service, token)) as ws:
            code = await _server_close_code(ws)
        await eventually(lambda: service.actors.hub.user_subscriber_count(str(user)) == 0)
        await runner.stop()
    lines = _lines(stream)
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, errors
    (error,) = errors
    assert error["logger"] == "auzap_actors.web.app"
    assert error["message"].startswith("unhandled error ")
    # The traceback goes down to the socket's own code and names the exception.
    assert "auzap_actors/web/ws.py" in error["exc"], error["exc"]
    assert "injected bug after the upgrade" in error["exc"], error["exc"]
    assert error.get("correlation_id"), "the line carries the socket's correlation id"
    assert token not in stream.getvalue()
    assert code == 1011  # internal error: the page reconnects with backoff


async def test_a_client_frame_nested_too_deep_is_skipped(runner: ServiceRunner) -> None:
    settings = make_settings(runner.database_url, runner.tmp_path, AUZAP_LOG_FORMAT="json")
    with captured_logs(settings) as stream:
        service = await runner.start(AUZAP_LOG_FORMAT="json")
        async with open_websocket_url(socket_url(service, user_token(uuid.uuid4()))) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            # Under the 4,096-character frame limit, deeper than Python's decoder recurses
            # (it raised RecursionError in the reading task, which ended the socket).
            await ws.send_message("[" * 3000)
            # A ping nested too deep is no ping: no pong for it, only for the next one.
            await ws.send_message('{"type": "ping", "x": ' + "[" * 1900 + "]" * 1900 + "}")
            assert await frames_until_pong(ws) == []
            with trio.move_on_after(0.5) as quiet:
                extra = await ws.get_message()  # a second pong would be the nested ping's
            assert quiet.cancelled_caught, extra
        await runner.stop()
    noisy = [line for line in _lines(stream) if line["level"] in NOISY]
    assert noisy == []


@pytest.mark.parametrize("how", ["close_frame", "tcp_gone", "shutdown"])
async def test_a_socket_that_ends_normally_logs_no_error(runner: ServiceRunner, how: str) -> None:
    settings = make_settings(runner.database_url, runner.tmp_path, AUZAP_LOG_FORMAT="json")
    with captured_logs(settings) as stream:
        service = await runner.start(AUZAP_LOG_FORMAT="json")
        user = uuid.uuid4()
        hub = service.actors.hub
        async with open_websocket_url(socket_url(service, user_token(user))) as ws:
            assert (await next_frame(ws))["type"] == "snapshot"
            await ws.send_message(json.dumps({"type": "ping"}))
            await frames_until_pong(ws)
            if how == "close_frame":
                await ws.aclose(1000)
            elif how == "tcp_gone":
                # The tab killed: the TCP connection ends without a close frame (trio-websocket
                # has no public way to do that).
                await ws._stream.aclose()
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(runner.stop)
                    assert await _server_close_code(ws) == 1001
        await eventually(lambda: hub.user_subscriber_count(str(user)) == 0)
        await runner.stop()
    noisy = [line for line in _lines(stream) if line["level"] in NOISY]
    assert noisy == []
