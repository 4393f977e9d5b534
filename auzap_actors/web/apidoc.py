"""The vocabulary of `/openapi.json`: an operation, its answers, the security schemes, and
the answers many routes share.  `operations.py` lists the routes in these terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import schemas
from .models import RequestModel

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    description: str
    model: Any = None  # a Struct, or None for no body
    media: str | tuple[str, ...] = JSON  # several: the answer is one of these types
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
    body_required: bool = True  # False: the body may be left out (`POST /connect`)
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


def error(description: str, *, retry_after: bool = False) -> Answer:
    return Answer(description, schemas.ErrorBody, retry_after=retry_after)


UNAUTHORIZED = error("Missing or invalid credentials.")
BAD_INPUT = error("Malformed JSON or a field out of bounds; the message names the field.")
TOO_LARGE = error("The body is over the route's limit (AUZAP_API_MAX_BYTES, 64 KiB).")
NO_INSTANCE = error("The user has no instance (or no such resource).")
UNAVAILABLE = error(
    "Busy actor, database not reachable now, or Evolution unreachable: retry later.",
    retry_after=True,
)
EVOLUTION_REFUSED = error("Evolution API refused the request.")
TIMEOUT = error("The instance's actor did not answer in time.")
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
    400: error("Malformed JSON or envelope (no `event`, no instance), or unstorable data."),
    401: UNAUTHORIZED,
    413: error("The body is over AUZAP_WEBHOOK_MAX_BYTES (16 MiB by default)."),
    503: error("The event cannot be stored now; Evolution retries.", retry_after=True),
}
API = "/api/whatsapp"
HTML = "text/html"
