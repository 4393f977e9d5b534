"""quart-trio's ASGI HTTP connection with two changes: body limits per route, and hypercorn is
left to finish a completed exchange.

Body limits: quart gives every request's body the app's MAX_CONTENT_LENGTH when the request is
created, before routing, and `request.max_content_length` set later only reaches form parsing,
not `get_data`/`get_json`.  So the body is given its route's limit here, where it is created:
webhooks may carry base64 media (AUZAP_WEBHOOK_MAX_BYTES), everything else is a small JSON body
(AUZAP_API_MAX_BYTES).

Keep-alive: when a response's last byte goes out, hypercorn (in the request's task, inside that
send) tells the application the stream is over, then arms the connection's keep-alive timer.
quart-trio cancels the request's tasks as soon as it hears that, which interrupts hypercorn
before the timer is armed: an idle keep-alive connection was then never closed.  Here the
cancellation is skipped when both the request and the response are complete, so hypercorn's
recycling runs to the end.  When the request body was not all read (an early 401 or 413), the
old behaviour stays: the connection is kept until the client closes it (it was told
"Connection: close") or hypercorn's read timeout, which lets the client read the answer
instead of having its upload reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, ASGISendEvent
from quart.asgi import ASGIHTTPConnection
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection

from ..config import Settings
from .context import EXTENSION

if TYPE_CHECKING:
    from .context import WebContext

WEBHOOK_PREFIX = "/api/webhook/"


def body_limit(settings: Settings, path: str) -> int:
    """The largest request body, in bytes, that the route at `path` accepts."""
    if path.startswith(WEBHOOK_PREFIX):
        return settings.webhook_max_bytes
    return settings.api_max_bytes


class BoundedHTTPConnection(TrioASGIHTTPConnection):
    _request_complete = False
    _response_complete = False

    def _create_request_from_scope(self, send: ASGISendCallable) -> Request:
        request = super()._create_request_from_scope(send)
        svc: WebContext = self.app.extensions[EXTENSION]
        limit = body_limit(svc.settings, request.path)
        # `body` and `body_class` are the request's public attributes; nothing has been
        # appended to the body yet (the receiving task starts after this returns).
        request.body = request.body_class(request.content_length, limit)
        request.max_content_length = limit
        return request

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def receive_noting_the_end() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self._request_complete = True
            return message

        async def send_noting_the_end(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Set before the send: hypercorn reports the disconnect from inside it.
                self._response_complete = True
            await send(message)

        await super().__call__(receive_noting_the_end, send_noting_the_end)

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        await ASGIHTTPConnection.handle_messages(self, request, receive)
        if not (self._request_complete and self._response_complete):
            # The client went away mid-exchange: stop the handler.  (A completed exchange
            # ends by itself once hypercorn's send returns.)
            nursery.cancel_scope.cancel()
