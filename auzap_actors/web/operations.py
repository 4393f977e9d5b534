"""Every route of the service, as `/openapi.json` describes it: what it takes (the request
models of `models.py`), what it answers (the Structs of `schemas.py`), and who may call it.

`openapi.py` turns this table into the document, keeping only the routes the running app
serves (the demo routes exist in demo mode only); tests/test_openapi.py fails when the app
serves a route this table lacks, and runs schemathesis over the rest against a live service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import schemas
from .models import DeleteQuery, PageQuery, RequestModel, SendMessage, SettingsChange

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    description: str
    model: Any = None  # a Struct, or None for no body
    media: str = JSON
    retry_after: bool = False  # carries Retry-After (a 503 that will pass)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # OpenAPI template: `{name}` for `<name>`
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    # Alternatives: any one of these security schemes (see SECURITY_SCHEMES); () = none.
    security: tuple[str, ...] = ()
    body: Any = None  # the request body's Struct
    query: type[RequestModel] | None = None
    path_params: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    websocket: bool = False  # a WebSocket upgrade, documented as its GET
    description: str = ""


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "userBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Supabase-compatible user JWT (HS256 with AUZAP_JWT_SECRET, or ES256/RS256"
        " from AUZAP_JWKS_URL); `sub` is the user id (UUID), `exp` is required.",
    },
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "AUZAP_ADMIN_TOKEN.",
    },
    "webhookSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auzap-Webhook-Secret",
        "description": "The instance's own secret (HMAC-SHA256 of AUZAP_WEBHOOK_SECRET and the"
        " instance name, hex), valid for events naming that instance, or the master"
        " AUZAP_WEBHOOK_SECRET.",
    },
    "webhookJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Evolution's `jwt_key` mode: HS256 with the same secret, claims `app:"
        ' "evolution"`, `action: "webhook"`, `iat` and `exp` at most 10 minutes apart.',
    },
    "userTokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
    "adminTokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
}


def _error(description: str, *, retry_after: bool = False) -> Answer:
    return Answer(description, schemas.ErrorBody, retry_after=retry_after)


UNAUTHORIZED = _error("Missing or invalid credentials.")
BAD_INPUT = _error("Malformed JSON or a field out of bounds; the message names the field.")
TOO_LARGE = _error("The body is over the route's limit (AUZAP_API_MAX_BYTES, 64 KiB).")
NO_INSTANCE = _error("The user has no instance (or no such resource).")
UNAVAILABLE = _error(
    "Busy actor, database not reachable now, or Evolution unreachable: retry later.",
    retry_after=True,
)
EVOLUTION_REFUSED = _error("Evolution API refused the request.")
TIMEOUT = _error("The instance's actor did not answer in time.")
# What every call into a user's actor may answer besides its success.
ACTOR_CALL: dict[int, Answer] = {
    401: UNAUTHORIZED,
    404: NO_INSTANCE,
    502: EVOLUTION_REFUSED,
    503: UNAVAILABLE,
    504: TIMEOUT,
}
USER = ("userBearer",)
ADMIN = ("adminBearer",)
WEBHOOK = ("webhookSecret", "webhookJwt")
UUID_PARAM = {"type": "string", "format": "uuid"}
WEBHOOK_ANSWERS: dict[int, Answer] = {
    200: Answer("Stored (or recognised as a duplicate) before this answer.", schemas.WebhookAck),
    400: _error("Malformed JSON or envelope (no `event`, no instance), or unstorable data."),
    401: UNAUTHORIZED,
    413: _error("The body is over AUZAP_WEBHOOK_MAX_BYTES (16 MiB by default)."),
    503: _error("The event cannot be stored now; Evolution retries.", retry_after=True),
}
API = "/api/whatsapp"
HTML = "text/html"

OPERATIONS: tuple[Operation, ...] = (
    # ---- user API (CONTRACT §3) ----
    Operation(
        "POST",
        f"{API}/connect",
        "Create the user's instance if needed, then connect (the QR follows on /ws)",
        "user",
        {200: Answer("The instance.", schemas.InstanceEnvelope), **ACTOR_CALL},
        USER,
    ),
    Operation(
        "GET",
        f"{API}/instance",
        "The user's instance",
        "user",
        {200: Answer("The instance.", schemas.InstanceView), **ACTOR_CALL},
        USER,
    ),
    Operation(
        "POST",
        f"{API}/logout",
        "Log the WhatsApp session out, keep the instance",
        "user",
        {200: Answer("The instance.", schemas.InstanceEnvelope), **ACTOR_CALL},
        USER,
    ),
    Operation(
        "DELETE",
        f"{API}/instance",
        "Delete the instance in Evolution and here",
        "user",
        {204: Answer("Deleted."), 400: BAD_INPUT, **ACTOR_CALL},
        USER,
        query=DeleteQuery,
    ),
    Operation(
        "POST",
        f"{API}/messages",
        "Send a text message",
        "user",
        {
            202: Answer("Accepted, stored as `pending`.", schemas.MessageEnvelope),
            400: BAD_INPUT,
            409: _error("The instance is not connected."),
            413: TOO_LARGE,
            **ACTOR_CALL,
        },
        USER,
        body=SendMessage,
    ),
    Operation(
        "PATCH",
        f"{API}/settings",
        "Change the instance's settings",
        "user",
        {
            200: Answer("The instance.", schemas.InstanceEnvelope),
            400: BAD_INPUT,
            413: TOO_LARGE,
            **ACTOR_CALL,
        },
        USER,
        body=SettingsChange,
    ),
    Operation(
        "GET",
        f"{API}/conversations",
        "The user's conversations, newest first",
        "user",
        {
            200: Answer("A page.", schemas.ConversationPage),
            400: BAD_INPUT,
            401: UNAUTHORIZED,
            503: UNAVAILABLE,
        },
        USER,
        query=PageQuery,
    ),
    Operation(
        "GET",
        f"{API}/conversations/{{conversation_id}}/messages",
        "A conversation's messages, newest first",
        "user",
        {
            200: Answer("A page.", schemas.MessagePage),
            400: BAD_INPUT,
            401: UNAUTHORIZED,
            404: _error("No such conversation of this user."),
            503: UNAVAILABLE,
        },
        USER,
        query=PageQuery,
        path_params={"conversation_id": UUID_PARAM},
    ),
    Operation(
        "GET",
        f"{API}/export",
        "The user's backup, streamed as NDJSON",
        "user",
        {
            200: Answer(
                "One JSON object per line: a header `{type: export}`, then `contact`,"
                " `conversation` and `message` lines, and last `{type: end, counts}`; a file"
                " without the end line is incomplete.",
                {"type": "string"},
                "application/x-ndjson",
            ),
            401: UNAUTHORIZED,
            404: NO_INSTANCE,
            503: UNAVAILABLE,
        },
        USER,
    ),
    Operation(
        "GET",
        "/ws",
        "The browser's live socket (WebSocket upgrade)",
        "user",
        {
            101: Answer("Switching protocols: frames `snapshot`, `status`, `qrcode`, ….", None),
            401: UNAUTHORIZED,
            403: _error("This Origin may not open the socket."),
            503: _error("Too many sockets on this node.", retry_after=True),
        },
        ("userTokenQuery",),
        websocket=True,
        description="CONTRACT §4. The user JWT goes in `?token=`.",
    ),
    # ---- webhooks (CONTRACT §5) ----
    Operation(
        "POST",
        "/api/webhook/whatsapp",
        "An Evolution event (the envelope names the instance)",
        "webhooks",
        WEBHOOK_ANSWERS,
        WEBHOOK,
        body=schemas.WebhookEnvelope,
    ),
    Operation(
        "POST",
        "/api/webhook/whatsapp/{slug}",
        "An Evolution event, `byEvents` mode (the URL names the event)",
        "webhooks",
        WEBHOOK_ANSWERS,
        WEBHOOK,
        body=schemas.WebhookEnvelope,
        path_params={"slug": {"type": "string", "examples": ["messages-upsert"]}},
    ),
    Operation(
        "POST",
        "/api/webhook/user/{user_id}",
        "An Evolution event for one user's instance",
        "webhooks",
        {
            **WEBHOOK_ANSWERS,
            403: _error("The envelope names another user's instance."),
            404: _error("The user id is not a UUID."),
        },
        WEBHOOK,
        body=schemas.WebhookEnvelope,
        path_params={"user_id": UUID_PARAM},
    ),
    Operation(
        "POST",
        "/api/webhook/evolution",
        "An Evolution event, legacy envelopes accepted",
        "webhooks",
        WEBHOOK_ANSWERS,
        WEBHOOK,
        body=schemas.WebhookEnvelope,
    ),
    Operation(
        "POST",
        "/api/webhook/test",
        "Dry run: what the service would do with this event (nothing is written)",
        "webhooks",
        {
            200: Answer("What would happen.", schemas.WebhookDryRun),
            400: WEBHOOK_ANSWERS[400],
            401: UNAUTHORIZED,
            413: WEBHOOK_ANSWERS[413],
        },
        WEBHOOK,
        body=schemas.WebhookEnvelope,
    ),
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
                404: _error("No instance of that name."),
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
            404: _error("No instance of that name."),
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
    # ---- demo mode only ----
    Operation(
        "GET",
        "/",
        "The demo page",
        "demo",
        {200: Answer("The page.", {"type": "string"}, HTML)},
    ),
    Operation(
        "POST",
        "/api/demo/login",
        "A token for the demo user",
        "demo",
        {200: Answer("A user JWT.", schemas.DemoLogin)},
    ),
    Operation(
        "POST",
        "/api/demo/scan",
        "The simulated phone scans the user's QR",
        "demo",
        {
            200: Answer("Scanned.", schemas.DemoScan),
            401: UNAUTHORIZED,
            404: _error("No simulator in this deployment."),
            409: _error("The simulator refused the scan (no QR waiting)."),
        },
        USER,
    ),
)
