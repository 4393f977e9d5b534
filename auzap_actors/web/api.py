"""The user API (CONTRACT §3): the caller's own instance, nothing else."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, request

from ..actors.service import UserRef
from ..core.views import instance_view
from .auth import bearer_token, decode_user_token
from .errors import ApiError
from .services import Services

api = Blueprint("api", __name__, url_prefix="/api/whatsapp")


def _svc() -> Services:
    svc: Services = current_app.extensions["auzap"]
    return svc


def current_user() -> UserRef:
    """The authenticated user of this request; AuthError (401) otherwise."""
    return decode_user_token(bearer_token(request.headers), _svc().settings.jwt_secret)


@api.post("/connect")
async def connect() -> dict[str, Any]:
    user = current_user()
    svc = _svc()
    snapshot = await svc.instances.connect_user_whatsapp(user)
    return {"instance": instance_view(snapshot, svc.now())}


@api.get("/instance")
async def get_instance() -> dict[str, Any]:
    user = current_user()
    svc = _svc()
    snapshot = await svc.instances.find_user_instance(user)
    if snapshot is None:
        raise ApiError(404, "not_found", "You have no WhatsApp instance yet; connect first.")
    return instance_view(snapshot, svc.now())


@api.post("/logout")
async def logout() -> dict[str, Any]:
    user = current_user()
    svc = _svc()
    snapshot = await svc.instances.logout(user)
    if snapshot is None:
        raise ApiError(404, "not_found", "You have no WhatsApp instance.")
    return {"instance": instance_view(snapshot, svc.now())}


@api.delete("/instance")
async def delete_instance() -> Response:
    user = current_user()
    if not await _svc().instances.delete(user):
        raise ApiError(404, "not_found", "You have no WhatsApp instance.")
    return Response(status=204)
