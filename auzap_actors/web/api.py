"""The user API (CONTRACT §3): the caller's own instance, nothing else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request

from ..actors.facade import (
    AutoReplyUnavailable,
    InstanceLimitReached,
    UserRef,
    encode_export_line,
)
from ..core.auto_reply import limits_view
from ..core.errors import BadCursor
from ..core.naming import LABEL_PATTERN, is_label
from ..core.views import instance_view
from .auth import bearer_token
from .context import context, user_tokens
from .errors import ApiError
from .models import (
    ConnectBody,
    DeleteQuery,
    InstanceQuery,
    PageQuery,
    SendMessage,
    SettingsChange,
)
from .request_parsing import parse_body, parse_query
from .settings import settings_change

api = Blueprint("api", __name__, url_prefix="/api/whatsapp")


async def current_user() -> UserRef:
    """The authenticated user of this request; AuthError (401) otherwise.

    Async because a token signed by a key we have not seen yet may fetch the JWKS."""
    return await user_tokens().authenticate(bearer_token(request.headers))


def _selector() -> str | None:
    """`?instance=<name or label>` of this request (None: the user's primary instance).
    Only ever resolved among the caller's own instances (the facade's SQL is scoped by user)."""
    return parse_query(InstanceQuery, request.args).instance


def _not_found(selector: str | None) -> ApiError:
    if selector is not None:
        return ApiError(404, "not_found", f"You have no WhatsApp instance named {selector!r}.")
    return ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")


@api.post("/connect")
async def connect() -> dict[str, Any]:
    user = await current_user()
    selector = _selector()
    actors = context().actors
    label = None
    if actors.max_instances_per_user > 1:
        # The body is optional (a plain connect sends none); with one instance per user it is
        # not read at all, as before.
        raw = await _body()
        label = parse_body(ConnectBody, raw).label if raw.strip() else None
        if label is not None and not is_label(label):
            raise ApiError(400, "invalid_label", "`label` must match " + LABEL_PATTERN)
    try:
        snapshot = await actors.connect(user, selector, label=label)
    except InstanceLimitReached as exc:
        raise ApiError(409, "instance_limit", str(exc)) from None
    return {"instance": instance_view(snapshot, actors.now())}


@api.get("/instances")
async def list_instances() -> dict[str, Any]:
    """All the caller's instances, the primary first, each an InstanceView with its label."""
    user = await current_user()
    actors = context().actors
    now = actors.now()
    found = await actors.user_instances(user)
    return {
        "instances": [{**instance_view(snap, now), "label": label} for snap, label in found],
        "max_instances": actors.max_instances_per_user,
    }


@api.get("/instance")
async def get_instance() -> dict[str, Any]:
    user = await current_user()
    selector = _selector()
    actors = context().actors
    snapshot = await actors.find_user_instance(user, selector)
    if snapshot is None:
        raise _not_found(selector)
    return instance_view(snapshot, actors.now())


@api.post("/logout")
async def logout() -> dict[str, Any]:
    user = await current_user()
    actors = context().actors
    snapshot = await actors.logout(user, _selector())
    return {"instance": instance_view(snapshot, actors.now())}


@api.delete("/instance")
async def delete_instance() -> Response:
    user = await current_user()
    query = parse_query(DeleteQuery, request.args)
    await context().actors.delete(user, purge=query.purge, instance=query.instance)
    return Response(b"", status=204)


async def _body() -> bytes:
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    return raw


@api.post("/messages")
async def send_message() -> tuple[dict[str, Any], int]:
    user = await current_user()
    selector = _selector()
    body = parse_body(SendMessage, await _body())
    message = await context().actors.send_text(user, body.recipient(), body.text, selector)
    return {"message": message}, 202


@api.patch("/settings")
async def change_settings() -> dict[str, Any]:
    user = await current_user()
    selector = _selector()
    change = settings_change(parse_body(SettingsChange, await _body()))
    actors = context().actors
    try:
        snapshot = await actors.change_settings(
            user,
            auto_reply=change.auto_reply,
            auto_reply_prompt=change.prompt,
            limits=change.limits,
            instance=selector,
        )
    except AutoReplyUnavailable as exc:
        raise ApiError(409, "auto_reply_unavailable", str(exc)) from None
    return {"instance": instance_view(snapshot, actors.now())}


@api.get("/settings")
async def read_settings() -> dict[str, Any]:
    """The settings PATCH changes, as stored (the prompt is not part of InstanceView)."""
    user = await current_user()
    selector = _selector()
    snapshot = await context().actors.find_user_instance(user, selector)
    if snapshot is None:
        raise _not_found(selector)
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
        items, cursor = await context().actors.conversations(
            user, page.limit, page.before, page.instance
        )
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
        found = await context().actors.messages(
            user, wanted, page.limit, page.before, page.instance
        )
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
    lines = await context().actors.export(user, _selector())

    async def body() -> AsyncGenerator[bytes, None]:
        async with aclosing(lines):
            async for line in lines:
                yield encode_export_line(line)

    response = Response(body(), status=200, content_type="application/x-ndjson; charset=utf-8")
    # Bounded memory, not bounded time: a large backup may stream for longer than the
    # app's RESPONSE_TIMEOUT.  A client that goes away ends it.
    response.timeout = None
    return response
