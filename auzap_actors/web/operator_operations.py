"""The operators' routes as `/openapi.json` describes them (see `operations.py`, which lists
them in their place among the others): the dashboard and its socket, the admin API
(CONTRACT §6), and the probes (liveness, readiness, metrics, this document).
"""

from __future__ import annotations

from . import schemas
from .apidoc import ADMIN, BAD_INPUT, HTML, UNAUTHORIZED, UNAVAILABLE, Answer, Operation, error

OPERATOR_OPERATIONS: tuple[Operation, ...] = (
    # ---- operators (CONTRACT §6) ----
    Operation(
        "GET",
        "/admin",
        "The health dashboard (a static page; paste the admin token into it)",
        "operators",
        {200: Answer("The page.", {"type": "string"}, HTML)},
    ),
    Operation(
        "GET",
        "/admin/ws",
        "The dashboard's live socket (WebSocket upgrade): the tree every 2 s",
        "operators",
        {101: Answer("Switching protocols.", None), 401: UNAUTHORIZED},
        ("adminTokenQuery",),
        websocket=True,
    ),
    Operation(
        "GET",
        "/admin/tree",
        "This node, the supervisor, and one entry per actor",
        "operators",
        {200: Answer("The tree.", schemas.AdminTree), 401: UNAUTHORIZED},
        ADMIN,
    ),
    *(
        Operation(
            "POST",
            f"/admin/instances/{{name}}/{action}",
            f"{action.capitalize()} an instance's actor",
            "operators",
            {
                200: Answer("The actor's entry.", schemas.ActorEntry),
                401: UNAUTHORIZED,
                404: error("No instance of that name."),
                503: UNAVAILABLE,
            },
            ADMIN,
            path_params={"name": {"type": "string", "examples": ["user_<uuid>"]}},
        )
        for action in ("restart", "stop", "start")
    ),
    # Listed by issue 11 (admin API); documented loosely until their filters are written here.
    Operation(
        "GET",
        "/admin/instances",
        "Instances, paginated, filtered by state, health and organisation",
        "operators",
        {
            200: Answer("A page of instances.", {"type": "object"}),
            400: BAD_INPUT,
            401: UNAUTHORIZED,
            503: UNAVAILABLE,
        },
        ADMIN,
    ),
    Operation(
        "GET",
        "/admin/instances/{name}",
        "One instance: snapshot, health history, inbox backlog, recent Evolution calls",
        "operators",
        {
            200: Answer("The instance.", {"type": "object"}),
            401: UNAUTHORIZED,
            404: error("No instance of that name."),
            503: UNAVAILABLE,
        },
        ADMIN,
        path_params={"name": {"type": "string"}},
    ),
    # ---- probes ----
    Operation(
        "GET",
        "/healthz",
        "Liveness: 200 while the process serves",
        "probes",
        {200: Answer("Alive.", schemas.Liveness)},
    ),
    Operation(
        "GET",
        "/readyz",
        "Readiness: the database, the supervisor and the inbox writer",
        "probes",
        {
            200: Answer("Ready.", schemas.Readiness),
            503: Answer("Not ready; `reasons` says why.", schemas.Readiness),
        },
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (admin token when configured so)",
        "probes",
        {
            200: Answer("Prometheus text format.", {"type": "string"}, "text/plain"),
            401: UNAUTHORIZED,
        },
        ("adminBearer", ""),
    ),
    Operation(
        "GET",
        "/openapi.json",
        "This document",
        "probes",
        {200: Answer("OpenAPI 3.1.", {"type": "object"})},
    ),
)
