"""Demo mode only (no real Evolution configured): a demo login, and the controls that stand in
for the phone: "simulate phone scan" asks the in-process simulator to scan the user's QR,
"simulate incoming message" asks it to deliver a message to the user's number.  Both act on the
signed-in user's own instance only (its name comes from the token, never from the body).
Outside demo mode this blueprint is not registered: every `/api/demo/*` is 404."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from quart import Blueprint, request

from ..core.naming import instance_name_for
from .api import current_user
from .auth import mint_user_token
from .context import context
from .errors import ApiError
from .models import DemoInbound
from .request_parsing import parse_body

demo = Blueprint("demo", __name__)

# A fixed demo user, so a restarted demo finds its instance again.
DEMO_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
DEMO_PHONE = "5511987654321"


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


@demo.post("/api/demo/inbound")
async def inbound() -> dict[str, Any]:
    """A message from `from` reaches the signed-in user's phone (the simulator's inbound)."""
    user = await current_user()
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    body = parse_body(DemoInbound, raw)
    name = instance_name_for(user.user_id)
    answer = await _simulator_post(
        f"/_sim/instances/{name}/inbound",
        {"from": body.phone(), "text": body.text, "push_name": body.push_name or None},
    )
    if answer.status_code == 404:
        raise ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")
    if answer.status_code != 200:
        raise ApiError(409, "not_connected", "WhatsApp is not connected; connect it first.")
    return {"delivered": True, "instance_name": name, "wa_message_id": answer.json().get("id")}
