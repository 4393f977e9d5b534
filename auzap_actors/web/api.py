"""The user API (CONTRACT §3): the caller's own instance, nothing else."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request

from ..actors.facade import AutoReplyUnavailable, UserRef, encode_export_line
from ..core.auto_reply import limits_view
from ..core.errors import BadCursor
from ..core.views import instance_view
from ..core.webhook import WebhookError, decode_json
from .auth import bearer_token
from .context import context, user_tokens
from .errors import ApiError
from .settings import parse_settings

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
    purge = request.args.get("purge", "false").lower()
    if purge not in ("true", "false"):
        raise ApiError(400, "invalid_purge", "`purge` must be true or false.")
    await context().actors.delete(user, purge=purge == "true")
    return Response(b"", status=204)


MAX_TEXT = 4096
_TO = re.compile(r"^(\d{8,15}|\d{8,15}@s\.whatsapp\.net|\d{6,30}(-\d{6,20})?@g\.us|\d{6,30}@lid)$")


async def _json_object() -> dict[str, Any]:
    # The webhooks' strict decoder: NaN, huge numbers and deep nesting are a 400 here too.
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    try:
        body = decode_json(raw)
    except WebhookError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


@api.post("/messages")
async def send_message() -> tuple[dict[str, Any], int]:
    user = await current_user()
    body = await _json_object()
    to, text = body.get("to"), body.get("text")
    if not isinstance(to, str) or not _TO.match(to.strip().lstrip("+").replace(" ", "")):
        raise ApiError(
            400,
            "invalid_recipient",
            "`to` must be a phone number in international format (digits only) or a jid.",
        )
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "invalid_text", "`text` must be a non-empty string.")
    if len(text) > MAX_TEXT:
        raise ApiError(400, "invalid_text", f"`text` is longer than {MAX_TEXT} characters.")
    message = await context().actors.send_text(user, to.strip().lstrip("+").replace(" ", ""), text)
    return {"message": message}, 202


@api.patch("/settings")
async def change_settings() -> dict[str, Any]:
    user = await current_user()
    change = parse_settings(await _json_object())  # web/settings.py: the one validator
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


def _page_args() -> tuple[int, str | None]:
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise ApiError(400, "invalid_limit", "`limit` must be a whole number from 1 to 200.")
    before = request.args.get("before") or None
    return int(raw_limit), before


@api.get("/conversations")
async def conversations() -> dict[str, Any]:
    user = await current_user()
    limit, before = _page_args()
    try:
        items, cursor = await context().actors.conversations(user, limit, before)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return {"conversations": items, "next": cursor}


@api.get("/conversations/<conversation_id>/messages")
async def conversation_messages(conversation_id: str) -> dict[str, Any]:
    user = await current_user()
    limit, before = _page_args()
    try:
        wanted = uuid.UUID(conversation_id)
    except ValueError:
        raise ApiError(404, "not_found", "No such conversation.") from None
    try:
        page = await context().actors.messages(user, wanted, limit, before)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    if page is None:
        raise ApiError(404, "not_found", "No such conversation.")
    items, cursor = page
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
