"""The response headers a security review checks first, on every response of the app.

- ``Content-Security-Policy``: scripts, styles, fonts and fetches from this origin only; no
  inline script or style, no ``eval``, no plugins, no ``<base>``; forms post here only; no
  page of this app inside anyone's frame (``frame-ancestors 'none'``; ``X-Frame-Options:
  DENY`` for browsers older than CSP 2).
- ``X-Content-Type-Options: nosniff``: a JSON body is never run as a script.
- ``Referrer-Policy: no-referrer``: a URL may name a patient; it does not travel on.
- ``Cross-Origin-Opener-Policy: same-origin``; ``Permissions-Policy`` turning off the
  sensors and devices no page here uses.
- ``Strict-Transport-Security`` when the request came over TLS, directly or through a proxy
  that uvicorn trusts (``forwarded_allow_ips``; vitaltrail/services.py): sent over plain HTTP
  a browser ignores it anyway (RFC 6797 §8.1), and it would pin a demo on localhost to https.
- ``Cache-Control: no-store`` on patient data (``/api/``, ``/fhir/``) and on sign-in and the
  token endpoint (``/auth/``, ``/sign-in``), whatever the route set: no shared or browser
  cache keeps a copy after sign-out.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
HSTS = "max-age=31536000; includeSubDomains"
NO_STORE_PREFIXES = ("/api/", "/fhir/", "/auth/", "/sign-in")

HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), usb=(), payment=()",
}


def no_store(path: str) -> bool:
    return path.startswith(NO_STORE_PREFIXES) or path in ("/api", "/fhir")


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP response (pure ASGI: streamed bodies too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"
        uncached = no_store(scope["path"])

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if tls:
                    headers["strict-transport-security"] = HSTS
                if uncached:
                    headers["cache-control"] = "no-store"
                    headers["pragma"] = "no-cache"  # HTTP/1.0 caches (RFC 6749 §5.1 asks it)
                if "server" in headers:
                    del headers["server"]
            await send(message)

        await self.app(scope, receive, sending)
