"""Demo mode only (no real Evolution configured): the demo page, a demo login, and the
"simulate phone scan" button that asks the in-process simulator to scan the user's QR."""

from __future__ import annotations

import uuid
from importlib import resources
from typing import Any

import httpx
from quart import Blueprint, Response

from ..core.naming import instance_name_for
from .api import current_user
from .auth import mint_user_token
from .context import context
from .errors import ApiError

demo = Blueprint("demo", __name__)

# A fixed demo user, so a restarted demo finds its instance again.
DEMO_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
DEMO_PHONE = "5511987654321"


@demo.get("/")
async def page() -> Response:
    html = resources.files(__package__).joinpath("static/index.html").read_text("utf-8")
    return Response(
        html,
        content_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
            " style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline';"
            " connect-src 'self' ws: wss:"
        },
    )


@demo.post("/api/demo/login")
async def login() -> dict[str, Any]:
    svc = context()
    token = mint_user_token(svc.settings.jwt_secret, DEMO_USER_ID, ttl_s=24 * 3600)
    return {"token": token, "user_id": str(DEMO_USER_ID)}


@demo.post("/api/demo/scan")
async def scan() -> dict[str, Any]:
    user = await current_user()
    svc = context()
    if svc.simulator_url is None:
        raise ApiError(404, "not_found", "No simulator in this deployment.")
    name = instance_name_for(user.user_id)
    async with httpx.AsyncClient(base_url=svc.simulator_url, timeout=10) as client:
        answer = await client.post(f"/_sim/instances/{name}/scan", json={"phone": DEMO_PHONE})
    if answer.status_code != 200:
        raise ApiError(409, "not_scannable", f"The simulator refused the scan: {answer.text}")
    return {"scanned": True, "instance_name": name}
