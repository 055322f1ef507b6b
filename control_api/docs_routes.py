"""Serves the OpenAPI document, a browsable Swagger UI and /healthz.

The Swagger UI is swagger-ui-dist 5 from the npm registry, vendored with its licence into
control_api/static/vendor/swagger-ui by scripts/vendor-web.sh (served from the install, works offline,
no CDN): version 5 renders OpenAPI 3.1, which the document is (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from control_api.api import ApiRoutes
from control_api.openapi import build_openapi

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = STATIC / "vendor" / "swagger-ui"
# What an unknown /app/* address answers (status 404, text/html): a page in the app's frame, not an
# empty download; unknown API addresses (/v1/...) stay problem+json (control_api.problems).
NOT_FOUND_PAGE = STATIC / "404.html"


def static_file(tail: str) -> Path | None:
    """The file under control_api/static that /app/<tail> names, or None (missing, a directory,
    or outside the folder: `..`, a symlink out, a NUL byte)."""
    root = STATIC.resolve()
    try:
        path = (root / tail).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None
    except (OSError, ValueError):
        return None

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>openvisit API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/app/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/v1/docs/static/swagger-ui.css">
<link rel="stylesheet" href="/app/docs-contrast.css"></head>
<body><main id="swagger-ui"></main>
<script src="/v1/docs/static/swagger-ui-bundle.js"></script>
<script src="/v1/docs/init.js"></script>
</body></html>"""

# A file, not an inline <script>: the Content-Security-Policy allows scripts from 'self' only
# (control_api/security_headers.py). No validator badge: it would load an image from swagger.io.
# No deep links: they put a link inside each operation's toggle button (a control inside a
# control, which screen readers cannot reach: axe's nested-interactive).
_DOCS_INIT = """"use strict";
window.ui = SwaggerUIBundle({url: "/v1/openapi.json", dom_id: "#swagger-ui", validatorUrl: null,
                             deepLinking: false});
"""


def install_docs(app: web.Application, routes: ApiRoutes) -> None:
    spec: dict[str, Any] = {}

    async def openapi(_request: web.Request) -> web.Response:
        if not spec:
            spec.update(build_openapi(routes))
        return web.json_response(spec)

    async def docs(_request: web.Request) -> web.Response:
        return web.Response(text=_DOCS_PAGE, content_type="text/html")

    async def docs_init(_request: web.Request) -> web.Response:
        return web.Response(text=_DOCS_INIT, content_type="text/javascript")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def root(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/app/")

    async def landing(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def app_file(request: web.Request) -> web.StreamResponse:
        path = static_file(request.match_info["tail"])
        if path is None:
            return web.Response(status=404, body=NOT_FOUND_PAGE.read_bytes(), content_type="text/html",
                                charset="utf-8")
        return web.FileResponse(path)

    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/docs", docs)
    app.router.add_get("/v1/docs/init.js", docs_init)
    app.router.add_static("/v1/docs/static", str(SWAGGER_UI))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", root)
    app.router.add_get("/app", root)
    app.router.add_get("/app/", landing)
    app.router.add_get("/app/{tail:.+}", app_file)
