"""Demo mode only (no real Evolution configured): a demo login, and the controls that stand in
for the phone: "simulate phone scan" asks the in-process simulator to scan the user's QR,
"simulate incoming message" asks it to deliver a message to the user's number.  Both act on the
signed-in user's own instance only (its name comes from the token, never from the body).
Outside demo mode this blueprint is not registered: every `/api/demo/*` is 404."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from quart import Blueprint, request

from ..core.naming import instance_name_for
from ..core.webhook import WebhookError, decode_json
from .api import current_user
from .auth import mint_user_token
from .context import context
from .errors import ApiError

demo = Blueprint("demo", __name__)

# A fixed demo user, so a restarted demo finds its instance again.
DEMO_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
DEMO_PHONE = "5511987654321"
MAX_TEXT = 4096
MAX_PUSH_NAME = 100
_PHONE = re.compile(r"^\d{8,15}$")


@demo.post("/api/demo/login")
async def login() -> dict[str, Any]:
    svc = context()
    token = mint_user_token(svc.settings.jwt_secret, DEMO_USER_ID, ttl_s=24 * 3600)
    return {"token": token, "user_id": str(DEMO_USER_ID)}


async def _simulator_post(path: str, body: dict[str, Any]) -> httpx.Response:
    svc = context()
    if svc.simulator_url is None:
        raise ApiError(404, "not_found", "No simulator in this deployment.")
    async with httpx.AsyncClient(base_url=svc.simulator_url, timeout=10) as client:
        return await client.post(path, json=body)


@demo.post("/api/demo/scan")
async def scan() -> dict[str, Any]:
    user = await current_user()
    name = instance_name_for(user.user_id)
    answer = await _simulator_post(f"/_sim/instances/{name}/scan", {"phone": DEMO_PHONE})
    if answer.status_code != 200:
        raise ApiError(409, "not_scannable", f"The simulator refused the scan: {answer.text}")
    return {"scanned": True, "instance_name": name}


async def _inbound_body() -> tuple[str, str, str | None]:
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    try:
        body = decode_json(raw)
    except WebhookError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    sender, text, push_name = body.get("from"), body.get("text"), body.get("push_name")
    if not isinstance(sender, str) or not _PHONE.match(
        sender := sender.strip().lstrip("+").replace(" ", "")
    ):
        raise ApiError(400, "invalid_sender", "`from` must be a phone number (8 to 15 digits).")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ApiError(400, "invalid_text", f"`text` must be 1 to {MAX_TEXT} characters.")
    if push_name is not None and (not isinstance(push_name, str) or len(push_name) > MAX_PUSH_NAME):
        raise ApiError(
            400, "invalid_push_name", f"`push_name` must be at most {MAX_PUSH_NAME} characters."
        )
    return sender, text, (push_name or None)


@demo.post("/api/demo/inbound")
async def inbound() -> dict[str, Any]:
    """A message from `from` reaches the signed-in user's phone (the simulator's inbound)."""
    user = await current_user()
    sender, text, push_name = await _inbound_body()
    name = instance_name_for(user.user_id)
    answer = await _simulator_post(
        f"/_sim/instances/{name}/inbound", {"from": sender, "text": text, "push_name": push_name}
    )
    if answer.status_code == 404:
        raise ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")
    if answer.status_code != 200:
        raise ApiError(409, "not_connected", "WhatsApp is not connected; connect it first.")
    return {"delivered": True, "instance_name": name, "wa_message_id": answer.json().get("id")}
