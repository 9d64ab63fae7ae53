"""The browser's session cookie, turned into a ``Principal``, and CSRF checked on every change.

For a request that carries a live session cookie (and no ``Authorization`` header: a bearer
token speaks for itself), :class:`SessionMiddleware` sets ``request.state.session_principal``
to the :class:`~access.tokens.Principal` the signed-in user would have from a token of the
embedded issuer (client ``vitaltrail:web``, the user's role and scopes, the patient a patient
account is, the session's public id as token id), which the API's auth dependency takes exactly
like a verified bearer token; and ``request.state.session`` to the session itself.

Every request with such a cookie whose method is not GET, HEAD or OPTIONS must carry the
session's CSRF token (synchronizer pattern): in the ``X-CSRF-Token`` header (scripts get it
from ``GET /auth/session``) or, for a form, in its ``csrf_token`` field. Otherwise: 403, and
nothing downstream runs. A request a browser marks ``Sec-Fetch-Site: cross-site`` is refused
too. The cookie is also ``SameSite=Strict``; the token is what holds if a browser does not
honour that. ``/auth/sign-in`` checks its own token (there is no session yet) and ``/auth/token``
does not read the cookie.

The cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, no ``Max-Age`` (it ends with the
browser; the server ends it sooner or later anyway), ``Secure`` unless the request came over
plain HTTP to a loopback host; when secure it is named ``__Host-vitaltrail-session``, a name
browsers accept only from a secure origin, for the whole host, so a sibling subdomain cannot
plant one.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import anyio.to_thread
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from access.apps import WEB_CLIENT_ID
from access.errors import Refusals
from access.issuer import ROLE_SCOPES
from access.scopes import ScopeSet
from access.tokens import Principal
from access.users import User, UserStore
from dashboards.forms import MAX_FORM_BYTES, FormError, is_form, parse_form
from dashboards.session_store import Session, SessionStore

log = logging.getLogger("vitaltrail.dashboards")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# Routes that take no authority from the session cookie, so need no session CSRF token.
CSRF_EXEMPT = frozenset({"/auth/sign-in", "/auth/token"})


@dataclass(frozen=True)
class CookieNames:
    session: str
    sign_in: str  # the sign-in form's double-submit token, before there is a session


PLAIN_COOKIES = CookieNames("vitaltrail-session", "vitaltrail-sign-in")
HOST_COOKIES = CookieNames("__Host-vitaltrail-session", "__Host-vitaltrail-sign-in")


def is_loopback(host_header: str | None) -> bool:
    """Whether a ``Host`` header names this machine (localhost, 127/8, ::1)."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookies_secure(conn: HTTPConnection) -> bool:
    """Secure cookies unless plain HTTP to a loopback host (the one-machine demo)."""
    return conn.url.scheme == "https" or not is_loopback(conn.headers.get("host"))


def cookie_names(conn: HTTPConnection) -> CookieNames:
    return HOST_COOKIES if cookies_secure(conn) else PLAIN_COOKIES


def set_cookie(
    response: Response, conn: HTTPConnection, name: str, value: str, *, http_only: bool = True
) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        secure=cookies_secure(conn),
        httponly=http_only,
        samesite="strict",
    )


def delete_cookie(response: Response, conn: HTTPConnection, name: str) -> None:
    response.delete_cookie(
        name, path="/", secure=cookies_secure(conn), httponly=True, samesite="strict"
    )


def principal_for(session: Session, user: User, issuer: str) -> Principal:
    """What a signed-in user's session lets them do: what a token of the embedded issuer
    would (``Issuer.token_for``), named by the session's public id."""
    scope = ROLE_SCOPES[user.role]
    return Principal(
        subject=user.name,
        client_id=WEB_CLIENT_ID,
        kind="user",
        roles=frozenset({user.role}),
        scopes=ScopeSet.parse(scope),
        token_id=session.public_id,
        issuer=issuer,
        expires_at=int(session.expires_at),
        patient=user.patient_id,
        claims={"session": True, "scope": scope},
    )


@dataclass(frozen=True)
class Sessions:
    """The session store, and the users it checks each session's user against."""

    store: SessionStore
    users: UserStore
    issuer: str  # the embedded issuer's URL: a session principal's issuer
    refusals: Refusals  # CSRF and origin refusals, by reason

    def open(self, secret: str) -> tuple[Session, Principal] | None:
        """The live session of a cookie and its principal; None if it is not live, or if its
        user is gone or disabled (then every session of that user ends)."""
        session = self.store.get(secret)
        if session is None:
            return None
        user = self.users.get(session.user)
        if user is None or user.disabled:
            self.store.refusals.add("session_user_disabled")
            self.store.revoke_user(session.user)
            return None
        return session, principal_for(session, user, self.issuer)


class SessionMiddleware:
    """Reads the session cookie (pure ASGI, so a refused request never reaches a route).

    The opened :class:`Sessions` is taken from ``app.state.sessions``, set in the lifespan;
    without it no request is signed in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sessions: Sessions | None = getattr(scope["app"].state, "sessions", None)
        conn = HTTPConnection(scope)
        name = cookie_names(conn).session
        secret = conn.cookies.get(name)
        if sessions is None or secret is None or "authorization" in conn.headers:
            await self.app(scope, receive, send)
            return
        opened = await anyio.to_thread.run_sync(sessions.open, secret)
        if opened is None:  # a stale cookie: the browser forgets it
            await self.app(scope, receive, _expiring(send, conn, name))
            return
        session, principal = opened
        if scope["method"] not in SAFE_METHODS and scope["path"] not in CSRF_EXEMPT:
            refused, receive = await _check_csrf(conn, session, receive)
            if refused is not None:
                sessions.refusals.add(refused)
                log.warning(
                    "refused a %s without a valid CSRF token (%s)", scope["method"], refused
                )
                response = JSONResponse(
                    {"detail": "this request needs the session's CSRF token", "reason": refused},
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["session_principal"] = principal
        state["session"] = session
        await self.app(scope, receive, send)


async def _check_csrf(
    conn: HTTPConnection, session: Session, receive: Receive
) -> tuple[str | None, Receive]:
    """None if the request carries the session's CSRF token, else the reason code; and the
    ``receive`` to go on with (a form's body is read here, then replayed)."""
    if conn.headers.get("sec-fetch-site") == "cross-site":
        return "csrf_cross_site", receive
    offered = conn.headers.get(CSRF_HEADER)
    if offered is None and is_form(conn.headers.get("content-type")):
        body, receive = await _buffered(receive)
        try:
            offered = parse_form(body).get(CSRF_FIELD) if body is not None else None
        except FormError:
            offered = None
    if offered is None:
        return "csrf_missing", receive
    return (None if session.csrf_matches(offered) else "csrf_mismatch"), receive


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None past the form bound) and a ``receive`` that replays it."""
    chunks: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        chunks.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        if size > MAX_FORM_BYTES:
            break
    body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
    pending = list(chunks)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return (body if size <= MAX_FORM_BYTES and not more else None), replay


def _expiring(send: Send, conn: HTTPConnection, name: str) -> Send:
    """``send`` with a header that deletes the cookie ``name``, unless the route set it."""
    gone = Response()
    delete_cookie(gone, conn, name)
    deletions = [(k, v) for k, v in gone.raw_headers if k == b"set-cookie"]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            if not any(v.startswith(f"{name}=") for v in headers.getlist("set-cookie")):
                for key, value in deletions:
                    headers.append(key.decode(), value.decode())
        await send(message)

    return sending


def session_of(conn: HTTPConnection) -> Session | None:
    found: Session | None = getattr(conn.state, "session", None)
    return found
