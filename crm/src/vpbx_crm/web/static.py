"""The built agent workspace at ``/``, without shadowing the API.

The workspace is one route, added after every API route and matched only by GET and HEAD
of paths outside the API's own first path segments (``/v1``, ``/internal``, ``/docs``...):
an unknown ``/v1/...`` path still gets the API's JSON 404, and a wrong method its 405.

- ``/assets/*``: the build's content-hashed files, cached for a year (a new build names
  them anew); a missing one is a 404, never index.html parsed as a script.
- Any other path without a file extension (``/``, ``/contacts/<id>``): ``index.html``, so a
  reload or a shared link of a client-side route works; revalidated on every load
  (``no-cache``), which is what picks up a new build.
- No build: 503 with a page saying how to build it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from vpbx_control.auth.principal import PUBLIC, AccessPolicy

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Never served as the workspace, whatever routes the app has: the API's own namespaces.
ALWAYS_RESERVED = frozenset(
    {"/v1", "/v2", "/internal", "/docs", "/redoc", "/openapi.json", "/metrics", "/config.json"}
)

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vpbx CRM: workspace not built</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}
code{{background:#f2f2f2;padding:.1em .3em}}</style></head>
<body><h1>The agent workspace is not built</h1>
<p>The CRM API runs (<a href="/docs">/docs</a>), but the web app has not been built
into the directory this CRM serves it from (<code>VPBX_WEB_DIR</code>).</p>
<p>Build it from the repository root with <code>make web</code>
(<code>npm ci &amp;&amp; npm run build</code> in <code>crm/web</code>; Node.js 18 or
newer); <code>make up</code> and <code>make test</code> build it too. Then reload.</p>
</body></html>
"""


def first_segment(path: str) -> str:
    """``/v1/contacts/x`` -> ``/v1``; ``/`` -> ``/``."""
    return "/" + path.lstrip("/").split("/", 1)[0]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def content_security_policy(control_url: str, sip_ws_url: str = "") -> str:
    """Everything from the CRM itself (no CDN); the API calls may also go to the control API
    (login, recordings, fetched as blobs and played from ``blob:`` URLs), the softphone's
    WebSocket to the edge. The live feed is the CRM's own WebSocket, which ``'self'``
    covers (CSP 3 matches ws:/wss: of the page's own host)."""
    sources = " ".join(origin for origin in (_origin(control_url), _origin(sip_ws_url)) if origin)
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {sources}".rstrip(),
            "media-src 'self' blob:",
            "img-src 'self' data: blob:",
            "style-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
        ]
    )


class WorkspaceRoute(BaseRoute):
    """Serves ``web_dir`` as the single-page app; public (it holds no data)."""

    # The route test reads this: the workspace is deliberately public, like /healthz.
    policy: AccessPolicy = PUBLIC

    def __init__(
        self, web_dir: Path, reserved: Iterable[str], control_url: str, sip_ws_url: str = ""
    ) -> None:
        self.web_dir = web_dir
        self.path = "/"
        self.reserved = ALWAYS_RESERVED | (frozenset(reserved) - {"/"})
        self.csp = content_security_policy(control_url, sip_ws_url)
        self._files = StaticFiles(directory=web_dir, check_dir=False)

    @property
    def built(self) -> bool:
        return (self.web_dir / "index.html").is_file()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if first_segment(path) in self.reserved:
            return Match.NONE, {}
        return Match.FULL, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.response(scope)
        await response(scope, receive, send)

    async def response(self, scope: Scope) -> Response:
        if not self.built:
            return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store"})
        relative = self._files.get_path(scope)  # normalized: no '..', '.' for the root
        if relative.startswith("assets/"):
            # Missing: StaticFiles raises the 404 (the app's error body).
            response = await self._files.get_response(relative, scope)
            response.headers["Cache-Control"] = IMMUTABLE
        elif "." in relative.rsplit("/", 1)[-1] and relative != ".":
            # A file of the build's top directory (favicon.svg); never index.html instead.
            response = await self._files.get_response(relative, scope)
            response.headers["Cache-Control"] = REVALIDATE
        else:
            response = await self._files.get_response("index.html", scope)
            response.headers["Cache-Control"] = REVALIDATE
            response.headers["Content-Security-Policy"] = self.csp
            response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def __repr__(self) -> str:
        return f"WorkspaceRoute(web_dir={str(self.web_dir)!r})"
