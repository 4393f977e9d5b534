"""The user's page (`GET /`, in every mode) and its static files (`/static/<name>`).

The page is plain HTML, CSS and JavaScript (no build step).  It holds no data and no secret:
the user signs in in the page (demo login in demo mode, otherwise by pasting their own JWT or
Supabase session), and the page sends that token with every call.  The only thing the server
tells the page is whether demo mode is on, as an attribute of `<html>`, so that the page offers
the demo controls (`/api/demo/*`) only where they exist.
"""

from __future__ import annotations

import re
from importlib import resources

from quart import Blueprint, Response, request

from .context import context
from .errors import ApiError

page = Blueprint("page", __name__)

# Only these files are served: a fixed list, so no path from the URL ever reaches the disk.
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "util.js": "text/javascript; charset=utf-8",
    "view.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# Scripts and styles only from this origin (no inline code), images from here or data: URLs
# (the QR code), fetches and the socket to this origin only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self' {sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A restarted (maybe upgraded) service serves the new page and files at once.
CACHE = "no-cache"
DEMO_MARK = 'data-demo="false"'
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text("utf-8")


def _headers() -> dict[str, str]:
    # 'self' covers this origin's ws:/wss: in current browsers (CSP 3), not in older ones: the
    # socket's own origin is named too.  The Host header only shapes this answer, to its sender.
    host = request.host
    sockets = f"ws://{host} wss://{host}" if _HOST.match(host) else ""
    return {"Content-Security-Policy": CSP.format(sockets=sockets), "Cache-Control": CACHE}


@page.get("/")
async def user_page() -> Response:
    html = _static_text("index.html")
    if context().settings.demo:
        html = html.replace(DEMO_MARK, 'data-demo="true"', 1)
    return Response(html, content_type="text/html; charset=utf-8", headers=_headers())


@page.get("/static/<name>")
async def static_file(name: str) -> Response:
    content_type = STATIC.get(name)
    if content_type is None:
        raise ApiError(404, "not_found", "No such file.")
    return Response(_static_text(name), content_type=content_type, headers=_headers())
