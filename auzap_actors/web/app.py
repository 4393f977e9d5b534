"""The quart-trio application: routes from the blueprints, one error shape, security headers."""

from __future__ import annotations

import logging
import uuid

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..actors.facade import (
    ActorUnavailable,
    CallTimeout,
    MailboxFull,
    NotConnected,
    UnknownActor,
)
from ..core.errors import UpstreamError, UpstreamUnavailable
from .admin import admin
from .api import api
from .auth import AuthError
from .context import EXTENSION, WebContext
from .demo import demo
from .errors import ApiError, error_response
from .ops import ops
from .webhooks import webhooks
from .ws import sockets

log = logging.getLogger(__name__)


def create_app(svc: WebContext) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)
    app.extensions[EXTENSION] = svc
    app.config["MAX_CONTENT_LENGTH"] = svc.settings.webhook_max_bytes
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    app.config["JSON_SORT_KEYS"] = False
    for blueprint in (ops, api, webhooks, sockets, admin):
        app.register_blueprint(blueprint)
    if svc.settings.demo:
        app.register_blueprint(demo)

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(AuthError)
    async def _auth_error(exc: AuthError) -> Response:
        return error_response(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})

    @app.errorhandler(MailboxFull)
    async def _busy(exc: MailboxFull) -> Response:
        return error_response(503, "busy", str(exc), {"Retry-After": "1"})

    @app.errorhandler(ActorUnavailable)
    async def _unavailable(exc: ActorUnavailable) -> Response:
        return error_response(503, "actor_unavailable", str(exc), {"Retry-After": "5"})

    @app.errorhandler(UnknownActor)
    async def _unknown(exc: UnknownActor) -> Response:
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(NotConnected)
    async def _not_connected(exc: NotConnected) -> Response:
        return error_response(409, "not_connected", str(exc))

    @app.errorhandler(CallTimeout)
    async def _timeout(exc: CallTimeout) -> Response:
        return error_response(504, "timeout", str(exc))

    @app.errorhandler(UpstreamError)
    async def _evolution(exc: UpstreamError) -> Response:
        if isinstance(exc, UpstreamUnavailable):
            return error_response(
                503,
                "evolution_unavailable",
                f"Evolution API is unavailable: {exc}",
                {"Retry-After": "5"},
            )
        return error_response(502, "evolution_error", f"Evolution API refused: {exc}")

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        message = exc.description or exc.name or "error"
        if status == 413:
            message = (
                f"The body is larger than the limit of {svc.settings.webhook_max_bytes} bytes."
            )
        return error_response(status, code, message)

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s", error_id, exc_info=exc)
        return error_response(
            500, "internal_error", f"Internal error; reference {error_id} in the service log."
        )

    @app.after_request
    async def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        origin = svc.settings.frontend_url
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin.rstrip("/")
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    return app
