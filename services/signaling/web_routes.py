"""The browser client: the page at ``/`` and ``/s/{sid}``, its files under ``/static/``.

The client is plain ES modules in ``web/`` (no build step). Every response signaling
sends carries the security headers: a Content-Security-Policy that allows no inline
script or style and no other origin, ``nosniff`` and no referrer (join links carry the
session token in their query string).
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).parent / "web"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; media-src 'self' blob:; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:js|css|svg)")
"What /static/ serves: flat, lower-case file names (so no path can leave WEB_DIR)."


def add_web_routes(app: web.Application) -> None:
    """Serve the page and its files from ``app``, and secure every response."""
    app.router.add_get("/", page)
    app.router.add_get("/s/{sid}", page)
    app.router.add_get("/static/{name}", static_file)
    app.on_response_prepare.append(_security_headers)


async def page(request: web.Request) -> web.StreamResponse:
    """The one page; the app reads the session id and token from the URL itself."""
    return _file(WEB_DIR / "index.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if not STATIC_NAME.fullmatch(name) or not path.is_file():
        raise web.HTTPNotFound()
    return _file(path)


def _file(path: Path) -> web.FileResponse:
    # no-cache: the browser revalidates (ETag), so an upgraded server never runs old code.
    return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[path.suffix],
                                           "Cache-Control": "no-cache"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
