"""The embedded issuer over HTTP, and the one call that gives an app sign-in and its defences.

- ``POST /auth/token``: the token endpoint for apps, SMART Backend Services (RFC 6749 §4.4
  ``client_credentials`` with an RFC 7523 ``private_key_jwt`` assertion; ``access/issuer.py``
  checks it). Form-encoded in, JSON out, ``Cache-Control: no-store``; refusals are RFC 6749
  §5.2 errors (``invalid_client`` 401, the others 400).
- ``GET /.well-known/jwks.json``: the issuer's public keys, which resource servers verify its
  tokens with; ``/.well-known/smart-configuration`` (SMART App Launch 2.2 §"Conformance") and
  ``/.well-known/openid-configuration`` (what OpenID discovery reads: ``issuer``,
  ``jwks_uri``, ``token_endpoint``; this issuer signs access tokens only, no ID tokens).
- The browser's side, from ``dashboards/sign_in.py``: ``GET /sign-in``, ``POST
  /auth/sign-in``, ``POST /auth/sign-out``, ``GET /auth/session``.

:func:`add_auth` adds the security headers (every response) and the session middleware, and,
when the sources name a :class:`WebAuth`, these routes, with the issuer and the session store
opened and closed by the app's lifespan and their refusals in ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from access.errors import Refusals, TokenRequestError
from access.issuer import Issuer
from dashboards.forms import FORM_TYPE, FormError, read_form
from dashboards.route_rules import Public, declare_path
from dashboards.security_headers import SecurityHeadersMiddleware
from dashboards.session import SessionMiddleware, Sessions
from dashboards.session_store import SessionPolicy, SessionStore
from dashboards.sign_in import SignInState
from dashboards.sign_in import router as sign_in_router
from dashboards.sign_in_limit import AddressLimit, AddressLimitPolicy

TOKEN_PATH = "/auth/token"  # noqa: S105 (a path, not a password)
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
# Routes that carry no patient data and need no token: the other routes' rules do not apply.
PUBLIC_ROUTES = frozenset(
    {
        ("POST", TOKEN_PATH),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/smart-configuration"),
        ("GET", "/fhir/.well-known/smart-configuration"),  # at the FHIR base, where SMART looks
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/sign-in"),
        ("POST", "/auth/sign-in"),
        ("POST", "/auth/sign-out"),
        ("GET", "/auth/session"),  # answers about the caller's own session cookie only
    }
)

router = APIRouter()
router.include_router(sign_in_router)


@dataclass(frozen=True)
class WebAuth:
    """What sign-in and the issuer's endpoints need; opened by the app's lifespan."""

    open_issuer: Callable[[], Issuer]
    sessions_path: Path
    session_policy: SessionPolicy = field(default_factory=SessionPolicy)
    address_limit: AddressLimitPolicy = field(default_factory=AddressLimitPolicy)
    hashing_threads: int = 2  # argon2 sign-ins hashed at once (each takes a core ~50 ms)
    clock: Callable[[], float] = time.time


class AuthSources(Protocol):
    """The part of ``DataSources`` that :func:`add_auth` reads."""

    @property
    def auth(self) -> WebAuth | None: ...


def _issuer(request: Request) -> Issuer:
    state: SignInState = request.app.state.sign_in
    return state.issuer


TOKEN_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_assertion_type", "client_assertion"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {
                            "type": "string",
                            "description": "a JWT signed ES384 or RS384 by a registered key",
                        },
                        "scope": {"type": "string", "example": "system/Observation.rs"},
                    },
                }
            }
        },
    }
}


@router.post(
    TOKEN_PATH,
    tags=["auth"],
    openapi_extra=TOKEN_REQUEST,
    responses={
        400: {"description": "an RFC 6749 §5.2 error other than invalid_client"},
        401: {"description": "invalid_client: the assertion was refused"},
    },
)
async def token(request: Request) -> JSONResponse:
    """SMART Backend Services: an access token for an app's signed client assertion."""
    issuer = _issuer(request)
    try:
        form = await read_form(request)
    except FormError as exc:
        refused = TokenRequestError("invalid_request", f"form_{exc.reason}", exc.description)
        issuer.refusals.add(f"token_{refused.reason}")
        return _token_error(refused)
    try:
        issued = await anyio.to_thread.run_sync(issuer.client_credentials, form)
    except TokenRequestError as exc:  # counted by the issuer
        return _token_error(exc)
    return JSONResponse(issued.response(), headers=NO_STORE)


def _token_error(error: TokenRequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=NO_STORE)


class JWKSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 §8.5.1


@router.get("/.well-known/jwks.json", tags=["auth"], response_class=JWKSetResponse)
async def jwks(request: Request) -> JWKSetResponse:
    """The embedded issuer's public signing keys (a JWK set, RFC 7517 §5)."""
    return JWKSetResponse(_issuer(request).jwks(), headers={"cache-control": "max-age=300"})


@router.get("/.well-known/smart-configuration", tags=["auth"])
@router.get("/fhir/.well-known/smart-configuration", tags=["auth"])
async def smart_configuration(request: Request) -> JSONResponse:
    """What a SMART app needs to know: the token endpoint and what it accepts. Served at the
    server's root and at the FHIR base (``/fhir``), where SMART App Launch has clients look."""
    return JSONResponse(_issuer(request).metadata(), headers={"cache-control": "max-age=300"})


@router.get("/.well-known/openid-configuration", tags=["auth"])
async def openid_configuration(request: Request) -> JSONResponse:
    """OpenID discovery of the embedded issuer, for resource servers: where its keys are."""
    meta = _issuer(request).metadata()
    keep = (
        "issuer",
        "jwks_uri",
        "token_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "scopes_supported",
    )
    return JSONResponse(
        {k: meta[k] for k in keep if k in meta}, headers={"cache-control": "max-age=300"}
    )


class RefusalsCollector(Collector):
    """The issuer's, the session store's and the web layer's refusals, by reason."""

    def __init__(self, sources: Mapping[str, Refusals]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "vitaltrail_auth_refusals",
            "Sign-ins, sessions, CSRF checks and token requests refused, by reason",
            labels=["source", "reason"],
        )
        for source, refusals in self._sources.items():
            for reason, count in sorted(refusals.snapshot().items()):
                family.add_metric([source, reason], count)
        yield family


def add_auth(app: FastAPI, sources: AuthSources) -> None:
    """Security headers on every response, browser sessions, and (when ``sources.auth`` is
    set) sign-in and the embedded issuer's endpoints. Call once, in ``create_app``."""
    app.add_middleware(SessionMiddleware)  # inner: added first
    app.add_middleware(SecurityHeadersMiddleware)  # outer: its headers go on refusals too
    auth = sources.auth
    if auth is None:
        return
    app.include_router(router)
    for _, path in PUBLIC_ROUTES:  # sign-in and discovery: no patient data
        declare_path(app, path, Public())
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(started: Any) -> AsyncIterator[Any]:
        issuer, store = await anyio.to_thread.run_sync(_open, auth)
        refusals = Refusals()
        state = SignInState(
            issuer=issuer,
            sessions=Sessions(store, issuer.users, issuer.config.issuer, refusals),
            limit=AddressLimit(auth.address_limit, clock=auth.clock),
            hashing=anyio.CapacityLimiter(auth.hashing_threads),
            refusals=refusals,
            clock=auth.clock,
        )
        app.state.sign_in = state
        app.state.sessions = state.sessions
        registry = CollectorRegistry()
        registry.register(
            RefusalsCollector(
                {
                    "issuer": state.issuer.refusals,
                    "sessions": state.sessions.store.refusals,
                    "web": state.refusals,
                }
            )
        )
        try:
            async with inner(started) as inner_state:
                metrics = getattr(app.state, "metrics", None)
                if isinstance(metrics, list):
                    metrics.append(registry)
                yield inner_state
        finally:
            app.state.sessions = None
            state.sessions.store.close()
            state.issuer.close()

    app.router.lifespan_context = lifespan


def _open(auth: WebAuth) -> tuple[Issuer, SessionStore]:
    issuer = auth.open_issuer()
    try:
        return issuer, SessionStore(auth.sessions_path, auth.session_policy, clock=auth.clock)
    except BaseException:
        issuer.close()
        raise
