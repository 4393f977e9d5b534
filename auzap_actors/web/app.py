"""The quart-trio application: routes from the blueprints, one error shape, security headers."""

from __future__ import annotations

import logging
import uuid

import trio
from quart import Request, Response, g, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..actors.facade import (
    ActorUnavailable,
    CallTimeout,
    DatabaseUnavailable,
    MailboxFull,
    NotConnected,
    UnknownActor,
    new_request_id,
    sane_request_id,
    set_correlation,
)
from ..core.errors import UpstreamError, UpstreamUnavailable
from . import openapi
from .admin import admin
from .api import api
from .asgi import WEBHOOK_PREFIX, BoundedHTTPConnection, body_limit
from .auth import AuthError, UserTokens
from .bench import bench
from .context import EXTENSION, TOKENS, WebContext
from .demo import demo
from .errors import ApiError, error_response
from .ops import ops
from .page import page
from .webhooks import webhooks
from .ws import sockets

log = logging.getLogger(__name__)
access = logging.getLogger("auzap_actors.access")

REQUEST_ID_HEADER = "X-Request-Id"


async def body_fully_received(req: Request, grace: float = 0.05) -> bool:
    """Whether all of the request's body has arrived.

    A request without Content-Length or Transfer-Encoding has none.  Otherwise this reads the
    state quart's `Body` keeps privately (quart 0.22): its completion event is set at the last
    chunk, or early, together with `_must_raise`, when the body went over the size limit; if
    those attributes ever go away the answer is "no", which only costs a reconnect.  The last
    chunk reaches the body in another task of the request: a handler that answers without a
    pause (a 401 before reading) is ahead of it even when the client sent everything, so a
    body that is not over the limit gets `grace` seconds to complete.
    """
    if not req.content_length and "Transfer-Encoding" not in req.headers:
        return True
    body = req.body
    complete = getattr(body, "_complete", None)
    if complete is None:
        return False
    if not complete.is_set() and getattr(body, "_must_raise", None) is None:
        with trio.move_on_after(grace):
            await complete.wait()
    return bool(complete.is_set() and getattr(body, "_must_raise", None) is None)


def create_app(svc: WebContext) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)
    app.extensions[EXTENSION] = svc
    app.extensions[TOKENS] = UserTokens.from_settings(svc.settings)
    # Each request's body gets its route's limit (asgi.body_limit); this is the default for
    # anything that reads the app's setting.
    app.config["MAX_CONTENT_LENGTH"] = svc.settings.api_max_bytes
    app.asgi_http_class = BoundedHTTPConnection
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    app.config["JSON_SORT_KEYS"] = False
    for blueprint in (ops, page, api, webhooks, sockets, admin):
        app.register_blueprint(blueprint)
    if svc.settings.demo:
        app.register_blueprint(demo)
    if svc.settings.bench_noop:
        app.register_blueprint(bench)
    openapi.install(app)  # last: it documents the routes registered so far

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(AuthError)
    async def _auth_error(exc: AuthError) -> Response:
        return error_response(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})

    @app.errorhandler(MailboxFull)
    async def _busy(exc: MailboxFull) -> Response:
        return error_response(503, "busy", str(exc), {"Retry-After": "1"})

    @app.errorhandler(DatabaseUnavailable)
    async def _database(exc: DatabaseUnavailable) -> Response:
        return error_response(503, "database_unavailable", str(exc), {"Retry-After": "2"})

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
        # The details (hosts, paths, transport errors) are for operators, in the log.
        log.warning("Evolution call failed: %s", exc)
        if isinstance(exc, UpstreamUnavailable):
            return error_response(
                503, "evolution_unavailable", exc.user_message, {"Retry-After": "5"}
            )
        return error_response(502, "evolution_error", exc.user_message)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        message = exc.description or exc.name or "error"
        if status == 413:
            if request.path.startswith(WEBHOOK_PREFIX):
                svc.actors.webhook_rejected("too_large")
            limit = body_limit(svc.settings, request.path)
            message = f"The body is larger than the limit of {limit} bytes for this route."
        return error_response(status, code, message)

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s", error_id, exc_info=exc)
        return error_response(
            500, "internal_error", f"Internal error; reference {error_id} in the service log."
        )

    @app.before_request
    async def _correlate() -> None:
        # Every line logged for this request (and by the tasks and actor letters it starts)
        # carries its id: the client's X-Request-Id when it is sane, else a new one.
        rid = sane_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        set_correlation(rid)
        g.request_id = rid
        g.started = trio.current_time()

    @app.before_websocket
    async def _correlate_socket() -> None:
        rid = sane_request_id(websocket.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        set_correlation(rid)

    @app.before_request
    async def _announced_body_too_large() -> None:
        # A declared length over the route's limit is refused before the handler runs, even
        # by routes that never read their body.  (A chunked body is stopped by the body's own
        # limit when it is read.)
        length = request.content_length
        if length is not None and length > body_limit(svc.settings, request.path):
            raise RequestEntityTooLarge()

    @app.after_request
    async def _close_if_body_unread(response: Response) -> Response:
        # An answer sent before the request body arrived (401 before reading it, 413 over the
        # limit, any error) leaves the rest of that body on the wire: the HTTP/1.x connection
        # cannot carry another request.  hypercorn means to close it, but its close runs in the
        # request's task, which quart-trio cancels on the disconnect hypercorn sends just before
        # (asgi.BoundedHTTPConnection keeps that cancellation for this case only, so the client
        # can read the answer): the socket stays open and a keep-alive client's next request on
        # it is never answered.  "Connection: close" tells the client not to reuse it; when the
        # client closes, hypercorn sees the EOF and closes its side (or its read timeout does).
        if request.http_version in ("1.0", "1.1") and not await body_fully_received(request):
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def _echo_request_id(response: Response) -> Response:
        rid = g.get("request_id")
        if rid is not None:
            response.headers[REQUEST_ID_HEADER] = rid
            # One access line per request (the path without its query: no token in it);
            # failures at INFO, the rest at DEBUG (webhooks alone are hundreds a second).
            level = logging.INFO if response.status_code >= 400 else logging.DEBUG
            if access.isEnabledFor(level):
                elapsed = trio.current_time() - g.get("started", trio.current_time())
                access.log(
                    level,
                    "%s %s -> %d in %.1f ms",
                    request.method,
                    request.path,
                    response.status_code,
                    elapsed * 1000,
                    extra={"http_status": response.status_code},
                )
        return response

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
