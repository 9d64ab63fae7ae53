"""The sign-in page, sign-in and sign-out: a browser session for a person with a password.

The page is plain HTML (``static/sign-in.html``) filled in on the server: no script, so
nothing for the Content Security Policy to allow. Its form carries a sign-in token that must
equal the one in a ``SameSite=Strict`` cookie set with the page (double submit: there is no
session yet to keep it in), so another site cannot sign a browser in to an account of its own
choosing (login CSRF). Before any password is hashed, the client's address must be within its
attempt budget (``AddressLimit``); the user store then locks an account after repeated
failures. A good password ends whatever session the browser had (a new id: no fixation) and
opens a new one. Every refusal is counted by reason code.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from access.errors import Refusals, SignInError
from access.issuer import Issuer
from access.users import MAX_PASSWORD_LENGTH, User
from dashboards.forms import FormError, read_form
from dashboards.refusals import error
from dashboards.session import (
    CSRF_FIELD,
    Sessions,
    cookie_names,
    delete_cookie,
    session_of,
    set_cookie,
)
from dashboards.session_store import NewSession, Session
from dashboards.sign_in_limit import AddressLimit

log = logging.getLogger("vitaltrail.dashboards")

PAGE = Template((Path(__file__).parent / "static" / "sign-in.html").read_text())
MAX_NEXT_LENGTH = 512

router = APIRouter()


@dataclass(frozen=True)
class SignInState:
    """What the sign-in routes use, opened in the app's lifespan (``app.state.sign_in``)."""

    issuer: Issuer
    sessions: Sessions
    limit: AddressLimit
    hashing: anyio.CapacityLimiter  # argon2 runs on at most this many threads at once
    refusals: Refusals  # the web layer's own refusals, by reason
    clock: Callable[[], float] = time.time


def _state(request: Request) -> SignInState:
    state: SignInState = request.app.state.sign_in
    return state


StateDep = Annotated[SignInState, Depends(_state)]


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path on this site only (no open redirect)."""
    if (
        not value
        or len(value) > MAX_NEXT_LENGTH
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c in "\\\x7f" for c in value)
    ):
        return "/"
    return value


WARD_PAGE, PATIENT_PAGE = "/", "/me"


def landing(next_path: str, role: str) -> str:
    """Where a user goes on after signing in: ``next_path``, except that a patient sent to
    the ward overview (the default) goes to their own page, where they decide who may see
    their data and see who did (the overview is a clinician's, with no way to either)."""
    return PATIENT_PAGE if role == "patient" and next_path == WARD_PAGE else next_path


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


def render(
    request: Request,
    state: SignInState,
    *,
    status: int = 200,
    notice: str = "",
    notice_kind: str = "error",
    username: str = "",
    next_path: str = "/",
    signed_in: tuple[Session, User] | None = None,
) -> HTMLResponse:
    """The page: the form with a fresh sign-in token (and its cookie), or who is signed in
    (the form is then hidden, but works: signing in again replaces the session)."""
    token = secrets.token_urlsafe(32)
    session, user = signed_in if signed_in else (None, None)
    policy = state.sessions.store.policy
    values = {
        "host": escape(request.headers.get("host", "")[:100]),
        "heading": "Signed in" if session else "Sign in",
        "notice": escape(notice),
        "notice_kind": notice_kind,
        "notice_hidden": "" if notice else " hidden",
        "form_hidden": " hidden" if session else "",
        "session_hidden": "" if session else " hidden",
        "sign_in_token": token,
        "next": escape(next_path),
        "username": escape(username),
        "username_focus": "" if username else " autofocus",
        "password_focus": " autofocus" if username else "",
        "user": escape(user.name) if user else "",
        "role": escape(user.role) if user else "",
        "session_token": escape(session.csrf_token) if session else "",
        "ends": "in " + _duration(session.expires_at - state.clock()) if session else "",
        "idle": _duration(policy.idle_s),
    }
    response = HTMLResponse(PAGE.substitute(values), status_code=status)
    set_cookie(response, request, cookie_names(request).sign_in, token)  # the hidden form too
    return response


@router.get("/sign-in", include_in_schema=False)
async def sign_in_page(request: Request, state: StateDep) -> HTMLResponse:
    """The sign-in form; to someone signed in, who they are and a sign-out button. ``?next=``
    names where to go after (a path of this site; anything else is taken as ``/``)."""
    session = session_of(request)
    target = safe_next(request.query_params.get("next"))
    if session is not None:
        user = state.sessions.users.get(session.user)
        if user is not None:
            target = landing(target, user.role)
            return render(request, state, next_path=target, signed_in=(session, user))
    if "signed-out" in request.query_params:
        return render(
            request, state, next_path=target, notice="You have signed out.", notice_kind="info"
        )
    return render(request, state, next_path=target)


@router.post("/auth/sign-in", include_in_schema=False)
async def sign_in(request: Request, state: StateDep) -> Response:
    """Check a user name and password; on success a session cookie and a redirect (303)."""

    def refuse(
        reason: str, status: int, notice: str, username: str = "", next_path: str = "/"
    ) -> HTMLResponse:
        state.refusals.add(reason)
        return render(
            request, state, status=status, notice=notice, username=username, next_path=next_path
        )

    host = request.client.host if request.client else None
    wait = state.limit.attempt(host)
    if wait:
        log.warning("refused a sign-in: too many attempts from one address")
        response = refuse(
            "sign_in_address_limited",
            429,
            f"Too many sign-in attempts from this address. Try again in {_duration(wait)}.",
        )
        response.headers["retry-after"] = str(int(wait))
        return response
    try:
        form = await read_form(request)
    except FormError as exc:
        return refuse(f"sign_in_form_{exc.reason}", 400, "The sign-in form was not readable.")
    next_path = safe_next(form.get("next"))
    username = form.get("username", "").strip().lower()[:64]
    password = form.get("password", "")
    expected = request.cookies.get(cookie_names(request).sign_in)
    offered = form.get(CSRF_FIELD)
    if not expected or not offered or not secrets.compare_digest(expected, offered):
        return refuse(
            "sign_in_form_expired",
            403,
            "This sign-in form had expired. Please enter your password again.",
            username=username,
            next_path=next_path,
        )
    if not username or not password or len(password) > MAX_PASSWORD_LENGTH:
        return refuse(
            "sign_in_invalid_credentials",
            401,
            "Wrong user name or password.",
            username=username,
            next_path=next_path,
        )
    try:
        user = await anyio.to_thread.run_sync(
            state.issuer.users.authenticate, username, password, limiter=state.hashing
        )
    except SignInError as exc:
        state.issuer.refusals.add(f"sign_in_{exc.reason}")
        status = {"invalid_credentials": 401, "rate_limited": 429, "disabled": 403}[exc.reason]
        notice = {
            "invalid_credentials": "Wrong user name or password.",
            "rate_limited": "This account is paused after repeated failed sign-ins. "
            "Try again later, or ask your administrator.",
            "disabled": "This account is disabled. Ask your administrator.",
        }[exc.reason]
        return render(
            request, state, status=status, notice=notice, username=username, next_path=next_path
        )
    old = request.cookies.get(cookie_names(request).session)
    opened = await anyio.to_thread.run_sync(_open_session, state, old, user.name)
    log.info("a %s signed in (session %s)", user.role, opened.session.public_id)
    redirect = RedirectResponse(landing(next_path, user.role), status_code=303)
    names = cookie_names(request)
    set_cookie(redirect, request, names.session, opened.secret)
    delete_cookie(redirect, request, names.sign_in)
    return redirect


def _open_session(state: SignInState, old: str | None, user: str) -> NewSession:
    if old:
        state.sessions.store.revoke(old)
    return state.sessions.store.create(user)


@router.post("/auth/sign-out", include_in_schema=False)
async def sign_out(request: Request, state: StateDep) -> Response:
    """End the session (the CSRF token was checked by the session middleware) and forget
    the cookie; without a session, only the latter."""
    names = cookie_names(request)
    secret = request.cookies.get(names.session)
    session = session_of(request)
    if session is not None and secret:
        await anyio.to_thread.run_sync(state.sessions.store.revoke, secret)
        log.info("session %s signed out", session.public_id)
    response = RedirectResponse("/sign-in?signed-out", status_code=303)
    delete_cookie(response, request, names.session)
    response.headers["clear-site-data"] = '"cache", "storage"'
    return response


@router.get("/auth/session", tags=["auth"], responses={401: error("not signed in")})
async def current_session(request: Request, state: StateDep) -> JSONResponse:
    """Who this browser is signed in as, and the CSRF token its scripts send in
    ``X-CSRF-Token`` with every POST, PUT, PATCH or DELETE; 401 when not signed in."""
    session = session_of(request)
    principal = getattr(request.state, "session_principal", None)
    if session is None or principal is None:
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    return JSONResponse(
        {
            "user": principal.subject,
            "roles": sorted(principal.roles),
            "patient": principal.patient,
            "session": session.public_id,
            "expires_at": int(session.expires_at),
            "idle_timeout_s": int(state.sessions.store.policy.idle_s),
            "csrf_token": session.csrf_token,
        }
    )
