"""The user API (CONTRACT §3): the caller's own instance, nothing else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request

from ..actors.facade import AutoReplyUnavailable, UserRef, encode_export_line
from ..core.auto_reply import limits_view
from ..core.errors import BadCursor
from ..core.views import instance_view
from .auth import bearer_token
from .context import context, user_tokens
from .errors import ApiError
from .models import DeleteQuery, PageQuery, SendMessage, SettingsChange, parse_body, parse_query
from .settings import settings_change

api = Blueprint("api", __name__, url_prefix="/api/whatsapp")


async def current_user() -> UserRef:
    """The authenticated user of this request; AuthError (401) otherwise.

    Async because a token signed by a key we have not seen yet may fetch the JWKS."""
    return await user_tokens().authenticate(bearer_token(request.headers))


@api.post("/connect")
async def connect() -> dict[str, Any]:
    user = await current_user()
    actors = context().actors
    snapshot = await actors.connect(user)
    return {"instance": instance_view(snapshot, actors.now())}


@api.get("/instance")
async def get_instance() -> dict[str, Any]:
    user = await current_user()
    actors = context().actors
    snapshot = await actors.find_user_instance(user)
    if snapshot is None:
        raise ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")
    return instance_view(snapshot, actors.now())


@api.post("/logout")
async def logout() -> dict[str, Any]:
    user = await current_user()
    actors = context().actors
    snapshot = await actors.logout(user)
    return {"instance": instance_view(snapshot, actors.now())}


@api.delete("/instance")
async def delete_instance() -> Response:
    user = await current_user()
    query = parse_query(DeleteQuery, request.args)
    await context().actors.delete(user, purge=query.purge)
    return Response(b"", status=204)


async def _body() -> bytes:
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    return raw


@api.post("/messages")
async def send_message() -> tuple[dict[str, Any], int]:
    user = await current_user()
    body = parse_body(SendMessage, await _body())
    message = await context().actors.send_text(user, body.recipient(), body.text)
    return {"message": message}, 202


@api.patch("/settings")
async def change_settings() -> dict[str, Any]:
    user = await current_user()
    change = settings_change(parse_body(SettingsChange, await _body()))
    actors = context().actors
    try:
        snapshot = await actors.change_settings(
            user,
            auto_reply=change.auto_reply,
            auto_reply_prompt=change.prompt,
            limits=change.limits,
        )
    except AutoReplyUnavailable as exc:
        raise ApiError(409, "auto_reply_unavailable", str(exc)) from None
    return {"instance": instance_view(snapshot, actors.now())}


@api.get("/settings")
async def read_settings() -> dict[str, Any]:
    """The settings PATCH changes, as stored (the prompt is not part of InstanceView)."""
    user = await current_user()
    snapshot = await context().actors.find_user_instance(user)
    if snapshot is None:
        raise ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")
    return {
        "auto_reply": snapshot.auto_reply,
        "auto_reply_prompt": snapshot.auto_reply_prompt,
        **limits_view(snapshot.auto_reply_limits),
    }


@api.get("/conversations")
async def conversations() -> dict[str, Any]:
    user = await current_user()
    page = parse_query(PageQuery, request.args)
    try:
        items, cursor = await context().actors.conversations(user, page.limit, page.before)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return {"conversations": items, "next": cursor}


@api.get("/conversations/<conversation_id>/messages")
async def conversation_messages(conversation_id: str) -> dict[str, Any]:
    user = await current_user()
    page = parse_query(PageQuery, request.args)
    try:
        wanted = uuid.UUID(conversation_id)
    except ValueError:
        raise ApiError(404, "not_found", "No such conversation.") from None
    try:
        found = await context().actors.messages(user, wanted, page.limit, page.before)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    if found is None:
        raise ApiError(404, "not_found", "No such conversation.")
    items, cursor = found
    return {"messages": items, "next": cursor}


@api.get("/export")
async def export() -> Response:
    """The user's backup as NDJSON (store/export.py), streamed: one JSON object per line."""
    user = await current_user()
    lines = await context().actors.export(user)

    async def body() -> AsyncGenerator[bytes, None]:
        async with aclosing(lines):
            async for line in lines:
                yield encode_export_line(line)

    response = Response(body(), status=200, content_type="application/x-ndjson; charset=utf-8")
    # Bounded memory, not bounded time: a large backup may stream for longer than the
    # app's RESPONSE_TIMEOUT.  A client that goes away ends it.
    response.timeout = None
    return response
