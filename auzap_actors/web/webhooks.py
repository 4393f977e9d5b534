"""Evolution webhooks (CONTRACT §5): authenticate, validate, persist, then acknowledge.

A 200 is sent only after the event's inbox row committed; the owning actor applies it later,
exactly once, in arrival order.  Bodies we will never accept get a 4xx (Evolution stops
retrying those); a moment of trouble on our side gets 503 + Retry-After (Evolution retries).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from ..actors.facade import EventRejected, IntakeUnavailable
from ..core.naming import instance_name_for, ordinal_for_user
from ..core.routing import classify, describe
from ..core.webhook import (
    WebhookError,
    decode_json,
    dedup_key,
    parse_envelope,
)
from .auth import AuthError, check_webhook, has_webhook_credentials
from .context import context
from .errors import ApiError

webhooks = Blueprint("webhooks", __name__, url_prefix="/api/webhook")


async def _receive(
    *,
    slug: str | None = None,
    legacy: bool = False,
    user_id: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    seen: list[str] = []  # the event, once the envelope is parsed
    try:
        return await _receive_counted(seen, slug, legacy, user_id, dry_run)
    except (AuthError, ApiError) as exc:
        # Refusals of a delivery (not of a dry run) are counted by reason: a wrong secret in
        # Evolution's config shows as a climbing `unauthorized`.  (Refusals by the inbox
        # itself, unstorable and unavailable, are counted where they happen.)
        if not dry_run and not (isinstance(exc, ApiError) and exc.code in _COUNTED_BY_INTAKE):
            reason = "unauthorized" if isinstance(exc, AuthError) else exc.code
            context().actors.webhook_rejected(reason, seen[0] if seen else None)
        raise


_COUNTED_BY_INTAKE = ("unstorable", "unavailable")


async def _receive_counted(
    seen: list[str], slug: str | None, legacy: bool, user_id: str | None, dry_run: bool
) -> dict[str, Any]:
    ctx = context()
    if not has_webhook_credentials(request.headers):
        raise AuthError("The webhook secret is missing.")
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    try:
        envelope = parse_envelope(decode_json(body), legacy=legacy, slug=slug)
    except WebhookError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    seen.append(envelope.event)
    if user_id is not None:
        try:
            expected = instance_name_for(user_id)
        except ValueError:
            raise ApiError(404, "not_found", "The user id in the URL is not a UUID.") from None
        # With several instances per user, any of the user's names (`user_<uuid>_<n>`) is
        # theirs; with one, only `user_<uuid>`, as before.
        several = ctx.settings.max_instances_per_user > 1
        if envelope.instance != expected and not (
            several and ordinal_for_user(envelope.instance, user_id) is not None
        ):
            raise ApiError(
                403, "forbidden", "The envelope names an instance that is not this user's."
            )
    # The secret must be the one of the instance the event names (or the master).
    check_webhook(request.headers, ctx.settings.webhook_secret, envelope.instance)
    if dry_run:
        try:
            route = classify(envelope.event, envelope.data)
        except WebhookError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        return {
            "accepted": False,
            "dry_run": True,
            "event": envelope.event,
            "instance": envelope.instance,
            "dedup_key": dedup_key(envelope),
            "would": describe(route),
        }
    try:
        duplicate = await ctx.actors.accept_webhook(envelope)
    except EventRejected as exc:
        raise ApiError(400, "unstorable", f"The event cannot be stored: {exc}") from None
    except IntakeUnavailable:
        # The reason may name the database's host: the inbox writer logs it; not for the caller.
        raise ApiError(
            503,
            "unavailable",
            "The event could not be stored now; retry later.",
            {"Retry-After": "5"},
        ) from None
    return {"accepted": True, "duplicate": duplicate}


@webhooks.post("/whatsapp")
async def whatsapp() -> dict[str, Any]:
    return await _receive()


@webhooks.post("/whatsapp/<slug>")
async def whatsapp_by_event(slug: str) -> dict[str, Any]:
    return await _receive(slug=slug)


@webhooks.post("/user/<user_id>")
async def for_user(user_id: str) -> dict[str, Any]:
    return await _receive(user_id=user_id)


@webhooks.post("/evolution")
async def legacy() -> dict[str, Any]:
    return await _receive(legacy=True)


@webhooks.post("/test")
async def dry_run() -> dict[str, Any]:
    return await _receive(legacy=True, dry_run=True)
