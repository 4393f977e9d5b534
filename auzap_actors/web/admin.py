"""Operator routes (CONTRACT §6), behind the admin token."""

from __future__ import annotations

import time
from typing import Any

from quart import Blueprint, current_app, request

from .auth import check_admin
from .errors import ApiError
from .services import Services

admin = Blueprint("admin", __name__, url_prefix="/admin")


def _svc() -> Services:
    svc: Services = current_app.extensions["auzap"]
    check_admin(request.headers, svc.settings.admin_token)
    return svc


@admin.get("/tree")
async def tree() -> dict[str, Any]:
    svc = _svc()
    now = svc.now()
    handles = sorted(svc.supervisor.handles(), key=lambda h: h.name)
    return {
        "node": {
            "id": svc.settings.node_id,
            "started_at": svc.started_at,
            "uptime_seconds": round(time.time() - svc.started_at, 3),
            "leases": {"held": 0},
        },
        "supervisor": {
            "running": svc.supervisor.running,
            "restart_policy": {
                "max_restarts": svc.supervisor.policy.max_restarts,
                "window_s": svc.supervisor.policy.window_s,
            },
            "children": {
                "inbox_writer": repr(svc.inbox_writer),
                "hub": repr(svc.hub),
            },
            "evolution_breaker": svc.supervisor.deps.evolution.breaker.snapshot(),
        },
        "actors": [h.entry(now) for h in handles],
    }


async def _entry(name: str) -> dict[str, Any]:
    svc = _svc()
    handle = svc.supervisor.get(name)
    if handle is None:
        raise ApiError(404, "not_found", f"No actor for {name}.")
    return handle.entry(svc.now())


@admin.post("/instances/<name>/restart")
async def restart(name: str) -> dict[str, Any]:
    svc = _svc()
    await svc.supervisor.restart_actor(name)
    return await _entry(name)


@admin.post("/instances/<name>/stop")
async def stop(name: str) -> dict[str, Any]:
    svc = _svc()
    handle = await svc.supervisor.stop_actor(name)
    if handle is None:
        raise ApiError(404, "not_found", f"No actor for {name}.")
    return await _entry(name)


@admin.post("/instances/<name>/start")
async def start(name: str) -> dict[str, Any]:
    svc = _svc()
    await svc.supervisor.ensure_actor(name, revive=True)
    return await _entry(name)
