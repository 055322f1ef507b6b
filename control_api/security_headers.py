"""Security headers on every response (issue 12): a strict Content-Security-Policy, nosniff,
no referrer, no framing, an isolated opener, a Permissions-Policy that grants camera and
microphone only to the two call pages, and HSTS when the request came over HTTPS.

The pages under /app/ carry no inline script, inline event handler or inline style, so the
policy needs no 'unsafe-inline' and no nonce. Signaling is a WebSocket to this host
(`ws(s)://<host>/v1/signaling`) or, with a standalone media node, to the origin of the
`signaling_url` setting; both are allowed in connect-src. Recordings play from /v1/... links
(same origin); the review page's export is a blob: download.

The Swagger UI at /v1/docs (bundled, same origin; its start-up script is a file too) runs under
the same strict rules: React sets styles through the CSSOM, which style-src does not govern.
Its policy only drops what it does not need (WebSockets, media, blob:).

A response the handler already sent (the WebSocket upgrade) is left alone: its headers are gone.
Requests aiohttp's HTTP parser refuses never reach the middleware; control_api.app answers them
with the same headers (`apply_security_headers`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Pages that use the camera and microphone: the two call pages and the device check (issue 13).
CALL_PAGES = frozenset({"/app/visitor.html", "/app/kiosk.html", "/app/check.html"})
DOCS_PREFIX = "/v1/docs"
HSTS = "max-age=63072000; includeSubDomains"

# Features no page uses; camera and microphone are added per page.
_DENIED_FEATURES = ("accelerometer", "display-capture", "geolocation", "gyroscope", "magnetometer",
                    "midi", "payment", "usb", "serial")
# A Host header we can safely echo into the policy (name or [IPv6], optional port).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

_COMMON = ("default-src 'none'", "script-src 'self'", "object-src 'none'", "base-uri 'none'",
           "frame-ancestors 'none'", "form-action 'self'", "font-src 'self'", "manifest-src 'self'")


def signaling_origin(signaling_url: str) -> str:
    """The origin (`wss://media.example:8443`) of a signaling URL, for connect-src."""
    parts = urlsplit(signaling_url)
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc or not _HOST.match(parts.netloc):
        raise ValueError(f"signaling_url must be a ws:// or wss:// URL with a host, not {signaling_url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def page_policy(host: str | None, signaling_origin: str | None = None) -> str:
    """The Content-Security-Policy for the app pages and API responses."""
    connect = ["'self'"]
    if host and _HOST.match(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    if signaling_origin and signaling_origin not in connect:
        connect.append(signaling_origin)
    return "; ".join((*_COMMON, "style-src 'self'", "img-src 'self' data: blob:", "media-src 'self' blob:",
                      "connect-src " + " ".join(connect)))


DOCS_POLICY = "; ".join((*_COMMON, "style-src 'self'", "img-src 'self' data:",
                         "connect-src 'self'"))


def permissions_policy(path: str) -> str:
    media = "(self)" if path in CALL_PAGES else "()"
    return ", ".join([f"camera={media}", f"microphone={media}", "fullscreen=(self)",
                      *(f"{feature}=()" for feature in _DENIED_FEATURES)])


def security_headers_for(path: str, host: str | None, secure: bool,
                         signaling_origin: str | None = None) -> dict[str, str]:
    """The headers every response carries: for a response to `path`, requested with `host` (the
    Host header, echoed into connect-src when it is a plain host name), over HTTPS if `secure`."""
    is_docs = path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")
    headers = {
        "Content-Security-Policy": DOCS_POLICY if is_docs else page_policy(host, signaling_origin),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": permissions_policy(path),
    }
    if secure:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def apply_security_headers(headers: MutableMapping[str, str], path: str, host: str | None, secure: bool,
                           signaling_origin: str | None = None) -> None:
    """Add the security headers to `headers`, keeping any a handler set itself."""
    for name, value in security_headers_for(path, host, secure, signaling_origin).items():
        headers.setdefault(name, value)


def security_headers_middleware(signaling_url: str | None = None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware; `signaling_url` is the setting of that name (a standalone media node)."""
    origin = signaling_origin(signaling_url) if signaling_url else None

    def apply(request: web.Request, headers: MutableMapping[str, str]) -> None:
        apply_security_headers(headers, request.path, request.host, request.secure, origin)

    @web.middleware
    async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and errors nobody turned into a response
            apply(request, exc.headers)
            raise
        if not response.prepared:  # a WebSocket upgrade or stream the handler already sent
            apply(request, response.headers)
        return response

    return security_headers
