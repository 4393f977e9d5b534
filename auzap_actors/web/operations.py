"""Every route of the service, as `/openapi.json` describes it: what it takes (the request
models of `models.py`), what it answers (the Structs of `schemas.py`), and who may call it.

`openapi.py` turns this table into the document, keeping only the routes the running app
serves (the demo routes exist in demo mode only); tests/test_openapi.py fails when the app
serves a route this table lacks, and runs schemathesis over the rest against a live service.
The operators' routes and the probes are listed in `operator_operations.py`, spliced in here.
"""

from __future__ import annotations

from . import schemas
from .apidoc import (
    ACTOR_CALL,
    API,
    BAD_INPUT,
    HTML,
    NO_INSTANCE,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    USER,
    UUID_PARAM,
    WEBHOOK,
    WEBHOOK_ANSWERS,
    Answer,
    Operation,
    error,
)
from .models import (
    ConnectBody,
    DeleteQuery,
    DemoInbound,
    InstanceQuery,
    PageQuery,
    SendMessage,
    SettingsChange,
)
from .operator_operations import OPERATOR_OPERATIONS

# Every user route takes `?instance=` (the user's primary instance without it): a selector
# that names none of the caller's instances is a 404.
NO_SUCH_INSTANCE = error("No instance of this user is so named or labelled.")

OPERATIONS: tuple[Operation, ...] = (
    # ---- user API (CONTRACT §3) ----
    Operation(
        "POST",
        f"{API}/connect",
        "Create the user's instance if needed, then connect (the QR follows on /ws)",
        "user",
        {
            200: Answer("The instance.", schemas.InstanceEnvelope),
            400: BAD_INPUT,
            409: error(
                "A new label while the user owns AUZAP_MAX_INSTANCES_PER_USER instances"
                " (`instance_limit`)."
            ),
            413: TOO_LARGE,
            **ACTOR_CALL,
        },
        USER,
        body=ConnectBody,
        body_required=False,
        query=InstanceQuery,
        description="With AUZAP_MAX_INSTANCES_PER_USER above 1, `label` (or `?instance=` with"
        " a label) connects the user's instance with that label, creating it when new; with"
        " the default (1) the body is not read and `?instance=` only selects.",
    ),
    Operation(
        "GET",
        f"{API}/instances",
        "All the user's instances, the primary first",
        "user",
        {200: Answer("The instances.", schemas.InstanceList), 401: UNAUTHORIZED, 503: UNAVAILABLE},
        USER,
    ),
    Operation(
        "GET",
        f"{API}/instance",
        "The user's instance",
        "user",
        {200: Answer("The instance.", schemas.InstanceView), 400: BAD_INPUT, **ACTOR_CALL},
        USER,
        query=InstanceQuery,
    ),
    Operation(
        "POST",
        f"{API}/logout",
        "Log the WhatsApp session out, keep the instance",
        "user",
        {200: Answer("The instance.", schemas.InstanceEnvelope), 400: BAD_INPUT, **ACTOR_CALL},
        USER,
        query=InstanceQuery,
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
            409: error("The instance is not connected."),
            413: TOO_LARGE,
            **ACTOR_CALL,
        },
        USER,
        body=SendMessage,
        query=InstanceQuery,
    ),
    Operation(
        "PATCH",
        f"{API}/settings",
        "Change the instance's settings",
        "user",
        {
            200: Answer("The instance.", schemas.InstanceEnvelope),
            400: BAD_INPUT,
            409: error("Auto-reply cannot be turned on: no AI responder is configured."),
            413: TOO_LARGE,
            **ACTOR_CALL,
        },
        USER,
        body=SettingsChange,
        query=InstanceQuery,
    ),
    Operation(
        "GET",
        f"{API}/settings",
        "The instance's settings as stored (with the auto-reply prompt)",
        "user",
        {200: Answer("The settings.", schemas.SettingsView), 400: BAD_INPUT, **ACTOR_CALL},
        USER,
        query=InstanceQuery,
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
            404: NO_SUCH_INSTANCE,
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
            404: error("No such conversation of this user (or no such instance of theirs)."),
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
            400: BAD_INPUT,
            401: UNAUTHORIZED,
            404: NO_INSTANCE,
            503: UNAVAILABLE,
        },
        USER,
        query=InstanceQuery,
    ),
    Operation(
        "GET",
        "/ws",
        "The browser's live socket (WebSocket upgrade)",
        "user",
        {
            101: Answer("Switching protocols: frames `snapshot`, `status`, `qrcode`, ….", None),
            401: UNAUTHORIZED,
            403: error("This Origin may not open the socket."),
            503: error("Too many sockets on this node.", retry_after=True),
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
            403: error("The envelope names another user's instance."),
            404: error("The user id is not a UUID."),
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
    # ---- operators (CONTRACT §6) and probes: operator_operations.py ----
    *OPERATOR_OPERATIONS,
    # ---- the user page (every mode) ----
    Operation(
        "GET",
        "/",
        "The user page (sign in, connect, conversations; no data without a token)",
        "page",
        {200: Answer("The page.", {"type": "string"}, HTML)},
    ),
    Operation(
        "GET",
        "/static/{name}",
        "One of the user page's files (app.js, live.js, util.js, view.js, app.css, icon.svg)",
        "page",
        {
            200: Answer(
                "The file.", {"type": "string"}, ("text/javascript", "text/css", "image/svg+xml")
            ),
            404: error("No such file."),
        },
        path_params={"name": {"type": "string", "examples": ["app.js"]}},
    ),
    # ---- demo mode only ----
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
            404: error("No simulator in this deployment."),
            409: error("The simulator refused the scan (no QR waiting)."),
        },
        USER,
    ),
    Operation(
        "POST",
        "/api/demo/inbound",
        "A message from `from` reaches the user's own simulated phone",
        "demo",
        {
            200: Answer("Delivered to the simulator.", schemas.DemoInboundAnswer),
            400: BAD_INPUT,
            401: UNAUTHORIZED,
            404: error("The user has no instance (or no simulator in this deployment)."),
            409: error("WhatsApp is not connected."),
            413: TOO_LARGE,
        },
        USER,
        body=DemoInbound,
    ),
    # ---- `AUZAP_BENCH_NOOP=1` only (auzap-actors bench) ----
    Operation(
        "POST",
        "/_bench/noop",
        "Reads the body and answers like a webhook, doing nothing (the bench's HTTP ceiling)",
        "bench",
        {200: Answer("Done nothing.", schemas.WebhookAck)},
    ),
)
