"""Operator routes (CONTRACT §6): the JSON routes behind the admin token, the dashboard page,
and its live WebSocket.

`GET /admin` is a static page without data or secret, so it is served without auth: the
operator pastes the admin token into it, and the page sends that token with every call.
`GET /admin/ws?token=<admin token>` sends the tree at once and then every `TREE_EVERY_S`, or
sooner when the page asks (`{"type": "refresh"}`, after an action).  A wrong or missing token
refuses the upgrade with 401.  The token is the socket's only credential (it is in the URL, not
in a cookie, so another site's page cannot borrow it): no Origin check.
"""

from __future__ import annotations

import json
import uuid
from importlib import resources
from typing import Any

import trio
from quart import Blueprint, Response, request, websocket

from ..actors.facade import Actors
from ..core.errors import BadCursor
from ..core.state import Status
from ..core.webhook_auth import same_secret
from .auth import check_admin
from .context import context
from .errors import ApiError

admin = Blueprint("admin", __name__, url_prefix="/admin")

TREE_EVERY_S = 2.0
MAX_CLIENT_FRAME = 4096
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " script-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def _actors() -> Actors:
    ctx = context()
    check_admin(request.headers, ctx.settings.admin_token)
    return ctx.actors


@admin.get("")
async def dashboard() -> Response:
    html = resources.files(__package__).joinpath("static/admin.html").read_text("utf-8")
    return Response(html, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@admin.websocket("/ws")
async def live() -> Response | None:
    svc = context()
    if not same_secret(websocket.args.get("token"), svc.settings.admin_token):
        body = json.dumps(
            {"error": {"code": "unauthorized", "message": "The admin token is missing or wrong."}}
        )
        return Response(body, status=401, content_type="application/json")
    await websocket.accept()
    wake = trio.Event()

    async def read_client() -> None:
        while True:
            raw = await websocket.receive()
            if isinstance(raw, str) and len(raw) <= MAX_CLIENT_FRAME and "refresh" in raw:
                wake.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_client)
        while True:
            frame = json.dumps({"type": "tree", "data": await svc.actors.tree()})
            # A client that stops reading: the launcher's transport resets the connection
            # after AUZAP_SEND_TIMEOUT_S (hypercorn shields its writes, see ws.py); this
            # scope bounds whatever wait lies outside that shield.
            with trio.move_on_after(svc.settings.send_timeout_s) as sending:
                await websocket.send(frame)
            if sending.cancelled_caught:
                break
            with trio.move_on_after(TREE_EVERY_S):
                await wake.wait()
            wake = trio.Event()
        nursery.cancel_scope.cancel()
    return None


@admin.get("/tree")
async def tree() -> dict[str, Any]:
    return await _actors().tree()


HEALTH_STATUSES = ("healthy", "unhealthy", "disconnected", "error")
STATUSES = tuple(s.value for s in Status)


def _one_of(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise ApiError(400, f"invalid_{name}", f"`{name}` must be one of {', '.join(allowed)}.")
    return value


@admin.get("/instances")
async def instances() -> dict[str, Any]:
    """Every instance the database knows, ordered by name, `limit` (1-200, default 50) a page,
    `cursor` from the previous page's `next`; filters `status` (or `state`), `health`,
    `organization_id`."""
    actors = _actors()
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise ApiError(400, "invalid_limit", "`limit` must be a whole number from 1 to 200.")
    status = _one_of("status", STATUSES)
    state = _one_of("state", STATUSES)
    if status and state and status != state:
        raise ApiError(400, "invalid_status", "`state` and `status` name the same filter.")
    org = request.args.get("organization_id") or None
    try:
        org_id = uuid.UUID(org) if org is not None else None
    except ValueError:
        raise ApiError(400, "invalid_organization_id", "`organization_id` is not a UUID.") from None
    try:
        return await actors.instances_page(
            limit=int(raw_limit),
            cursor=request.args.get("cursor") or None,
            status=status or state,
            health=_one_of("health", HEALTH_STATUSES),
            organization_id=org_id,
        )
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None


@admin.get("/instances/<name>")
async def instance(name: str) -> dict[str, Any]:
    """One instance: its row and live actor, health history, inbox backlog and failed rows,
    recent Evolution calls; 404 when neither the database nor this node knows the name."""
    return await _actors().instance_detail(name)


@admin.post("/instances/<name>/restart")
async def restart(name: str) -> dict[str, Any]:
    return await _actors().restart_actor(name)


@admin.post("/instances/<name>/stop")
async def stop(name: str) -> dict[str, Any]:
    return await _actors().stop_actor(name)


@admin.post("/instances/<name>/start")
async def start(name: str) -> dict[str, Any]:
    return await _actors().start_actor(name)
