"""Operator routes (CONTRACT §6), behind the admin token."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from ..actors.facade import Actors
from .auth import check_admin
from .context import context

admin = Blueprint("admin", __name__, url_prefix="/admin")


def _actors() -> Actors:
    ctx = context()
    check_admin(request.headers, ctx.settings.admin_token)
    return ctx.actors


@admin.get("/tree")
async def tree() -> dict[str, Any]:
    return await _actors().tree()


@admin.post("/instances/<name>/restart")
async def restart(name: str) -> dict[str, Any]:
    return await _actors().restart_actor(name)


@admin.post("/instances/<name>/stop")
async def stop(name: str) -> dict[str, Any]:
    return await _actors().stop_actor(name)


@admin.post("/instances/<name>/start")
async def start(name: str) -> dict[str, Any]:
    return await _actors().start_actor(name)
