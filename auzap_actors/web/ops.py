"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, current_app

ops = Blueprint("ops", __name__)


@ops.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    svc = current_app.extensions["auzap"]
    reasons = []
    try:
        with trio.fail_after(2):
            await svc.pool.fetchval("SELECT 1")
    except Exception as exc:
        reasons.append(f"database unreachable: {type(exc).__name__}")
    if not svc.supervisor.running:
        reasons.append("supervisor not running")
    if not svc.inbox_writer.running:
        reasons.append("webhook inbox writer not running")
    # An open circuit to Evolution is reported, not a reason to take this node out of
    # service: webhooks are still stored and the API still answers from the database.
    evolution = svc.supervisor.deps.evolution.breaker.snapshot()
    if reasons:
        return {"status": "unavailable", "reasons": reasons, "evolution": evolution}, 503
    return {"status": "ready", "evolution": evolution}, 200
