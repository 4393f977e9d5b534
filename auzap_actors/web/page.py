"""The user's page (`GET /`, in every mode) and its static files (`/static/<name>`).

The page is plain HTML, CSS and JavaScript (no build step).  It holds no data and no secret:
the user signs in in the page (demo login in demo mode, otherwise by pasting their own JWT or
Supabase session), and the page sends that token with every call.  The only thing the server
tells the page is whether demo mode is on, as an attribute of `<html>`, so that the page offers
the demo controls (`/api/demo/*`) only where they exist.
"""

from __future__ import annotations

from importlib import resources

from quart import Blueprint, Response

from .context import context
from .errors import ApiError

page = Blueprint("page", __name__)

# Only these files are served: a fixed list, so no path from the URL ever reaches the disk.
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# Scripts and styles only from this origin (no inline code), images from here or data: URLs
# (the QR code), sockets and fetches to this origin only.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'",
    # A restarted (maybe upgraded) service serves the new page and files at once.
    "Cache-Control": "no-cache",
}
DEMO_MARK = 'data-demo="false"'


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text("utf-8")


@page.get("/")
async def user_page() -> Response:
    html = _static_text("index.html")
    if context().settings.demo:
        html = html.replace(DEMO_MARK, 'data-demo="true"', 1)
    return Response(html, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@page.get("/static/<name>")
async def static_file(name: str) -> Response:
    content_type = STATIC.get(name)
    if content_type is None:
        raise ApiError(404, "not_found", "No such file.")
    return Response(_static_text(name), content_type=content_type, headers=PAGE_HEADERS)
