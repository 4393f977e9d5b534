"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from .context import context

ops = Blueprint("ops", __name__)


@ops.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    report = await context().actors.readiness()
    if report["reasons"]:
        return {"status": "unavailable", **report}, 503
    return {"status": "ready", **report}, 200
