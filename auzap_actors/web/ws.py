"""The browser WebSocket (CONTRACT §4): `GET /ws?token=<JWT>`.

The token is checked before the upgrade is accepted (401 otherwise).  The socket subscribes to
the hub *before* reading the snapshot, so no frame can fall between the two; a duplicate frame
is possible and harmless.  One task writes to the socket, one reads pings.

Once the opening frames are out, the socket hands the hub its connection's direct writer (the
launcher's `DirectSocket`, in the scope's extensions; absent under other servers): the hub
then writes each frame to the wire in its own step while nothing is queued for this socket,
and this task writes only what queued up (a slow reader's backlog), all of it per wake-up in
one write.

Bounds: a user's socket beyond AUZAP_WS_PER_USER evicts that user's oldest, which closes with
4409; beyond AUZAP_WS_MAX sockets on this node the upgrade is refused with 503.  A write to a
client that stopped reading ends after AUZAP_SEND_TIMEOUT_S: that timeout lives in the launcher's
transport (`http_server.BoundedStream`), because hypercorn writes to the socket inside a shielded
cancel scope, which no timeout placed around `websocket.send` here could interrupt.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import trio
from quart import Blueprint, Response, websocket

from ..actors.facade import (
    DIRECT_SOCKET,
    Actors,
    DatabaseUnavailable,
    DirectWriter,
    SocketsFull,
    Subscription,
    UserRef,
    wire_bytes,
)
from ..core.views import encode_frame, instance_view
from ..core.webhook import WebhookError, decode_json
from .auth import AuthError
from .context import WebContext, context, user_tokens

sockets = Blueprint("sockets", __name__)

CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011  # a bug in the socket's handler (logged); the browser reconnects
CLOSE_TOKEN_EXPIRED = 4401  # CONTRACT §4's code for a refused token, also used at expiry
CLOSE_TOO_MANY_SOCKETS = 4409  # the user opened more than AUZAP_WS_PER_USER: the oldest goes
MAX_CLIENT_FRAME = 4096
PONG = json.dumps({"type": "pong"})


def _origin_allowed(svc: WebContext) -> bool:
    origin = websocket.headers.get("Origin")
    if not origin:
        return True  # not a browser: the token is the only credential that matters
    if svc.settings.frontend_url:
        return origin.rstrip("/") == svc.settings.frontend_url.rstrip("/")
    return urlsplit(origin).netloc == websocket.headers.get("Host", "")


def _reject(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, content_type="application/json", headers=headers)


@sockets.websocket("/ws")
async def browser_socket() -> Response | None:
    svc = context()
    actors = svc.actors
    if not _origin_allowed(svc):
        return _reject(403, "forbidden_origin", "This origin may not open the socket.")
    try:
        user = await user_tokens().authenticate(websocket.args.get("token"))
    except AuthError as exc:
        return _reject(401, exc.code, exc.message)
    with ExitStack() as stack:
        try:
            # Subscribed before the upgrade: a refusal can still be an HTTP answer, and no
            # frame falls between the subscription and the snapshot.
            sub = stack.enter_context(actors.subscribe(user))
        except SocketsFull as exc:
            return _reject(503, "too_many_sockets", f"{exc} Retry shortly.", {"Retry-After": "5"})
        await websocket.accept()
        try:
            await _serve_accepted(actors, user, sub)
        except Exception:
            # A bug: the app's error handler logs it with its traceback (web/app.py `_bug`);
            # the browser hears 1011 and reconnects, not quart's 1000 (a normal end).
            try:
                await websocket.close(CLOSE_INTERNAL_ERROR, "internal error")
            except Exception:
                pass  # the connection is already gone or closed
            raise
    return None


async def _serve_accepted(actors: Actors, user: UserRef, sub: Subscription) -> None:
    """An upgraded socket: its opening frames, then what the hub publishes, until the token
    expires or the hub cuts it off; then its closing frame."""
    try:
        await _send_opening(actors, user)
    except DatabaseUnavailable:
        # Upgraded already, so no 503: the browser reconnects on 1013 as for a socket cut
        # off, and gets its snapshot then (a burst of reconnections can exhaust the pool).
        await websocket.close(CLOSE_TRY_AGAIN, "database unavailable, reconnect")
        return

    async def read_client() -> None:
        while True:
            raw = await websocket.receive()
            if isinstance(raw, str) and len(raw) <= MAX_CLIENT_FRAME:
                try:
                    # The service's strict decoder: a frame nested too deep is skipped like
                    # any invalid one, never a RecursionError that ends the socket.
                    message = decode_json(raw.encode())
                except WebhookError:
                    continue
                if isinstance(message, dict) and message.get("type") == "ping":
                    sub.offer(PONG)

    # The token is checked once, at the upgrade; the socket ends when the token does, and
    # the browser comes back with a fresh one.
    expires = float("inf")
    if user.expires_at is not None:
        expires = trio.current_time() + max(0.0, user.expires_at - time.time())
    extensions: dict[str, Any] = websocket.scope.get("extensions") or {}
    direct: DirectWriter | None = extensions.get(DIRECT_SOCKET)
    with trio.move_on_at(expires) as expiry:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_client)
            sub.direct = direct
            if direct is None:
                async for text in sub.receive:
                    if sub.evicted:
                        break  # the newer socket starts from a fresh snapshot anyway
                    await websocket.send(text)
                    sub.written(1)
            else:
                await _write_queued(sub, direct)
            # The hub cut us off: we fell behind, a newer socket of this user evicted us,
            # or the service is shutting down.
            nursery.cancel_scope.cancel()
    rest = sub.detach()
    if rest and direct is not None:
        await direct.send_all(rest)  # the end of a frame already begun on the wire
    if expiry.cancelled_caught:
        await websocket.close(CLOSE_TOKEN_EXPIRED, "token expired")
    elif sub.evicted:
        await websocket.close(CLOSE_TOO_MANY_SOCKETS, "too many sockets for this user")
    elif sub.overflowed:
        await websocket.close(CLOSE_TRY_AGAIN, "too slow, reconnect")
    else:
        await websocket.close(CLOSE_GOING_AWAY, "server shutting down")


async def _send_opening(actors: Actors, user: UserRef) -> None:
    """The socket's first frames: the snapshot, and with several instances per user, all."""
    snapshot = await actors.find_user_instance(user)
    view = instance_view(snapshot, actors.now()) if snapshot else None
    await websocket.send(encode_frame("snapshot", view))
    if actors.max_instances_per_user > 1:
        # The snapshot stays the primary's InstanceView; a user with several instances
        # also gets all of them (each with its label), the primary first.
        now = actors.now()
        listed = [
            {**instance_view(snap, now), "label": label}
            for snap, label in await actors.user_instances(user)
        ]
        await websocket.send(encode_frame("instances", listed))


async def _write_queued(sub: Subscription, direct: DirectWriter) -> None:
    """Write what queues up for the socket, everything queued per wake-up in one write, until
    the hub closes the queue."""
    while True:
        try:
            first = await sub.receive.receive()
        except trio.EndOfChannel:
            return
        batch = [first]
        while True:
            try:
                batch.append(sub.receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        if sub.evicted:
            # No more frames, but the end of one already begun must still be written.
            if isinstance(first, bytes):
                await direct.send_all(first)
            return
        await direct.send_all(b"".join(wire_bytes(item) for item in batch))
        sub.written(len(batch))
