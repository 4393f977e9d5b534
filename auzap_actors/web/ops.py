"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ..actors.facade import METRICS_CONTENT_TYPE
from .auth import check_metrics
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


@ops.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format (README "Operators"): open unless AUZAP_METRICS_REQUIRE_AUTH or
    AUZAP_METRICS_TOKEN is set, then a Bearer token (the metrics or the admin token)."""
    ctx = context()
    settings = ctx.settings
    if settings.metrics_require_auth:
        check_metrics(request.headers, settings.admin_token, settings.metrics_token)
    body = await ctx.actors.metrics_text()
    return Response(body, content_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})
