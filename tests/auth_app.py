"""The web app with sign-in on a clock the test moves, cheap password hashes, and a probe route
that says what the session middleware made of a request."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from access.issuer import Issuer, IssuerConfig
from access.users import Role, UserStore
from dashboards.app import create_app
from dashboards.auth_routes import TOKEN_PATH, WebAuth
from dashboards.route_rules import Public, access
from dashboards.session_store import SessionPolicy
from dashboards.sign_in import SignInState
from dashboards.sign_in_limit import AddressLimitPolicy
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

ISS = "https://vitaltrail.test"
TOKEN_URL = ISS + TOKEN_PATH
LOCAL = "http://127.0.0.1:8000"  # the one-machine demo: plain HTTP on loopback
PASSWORD = "correct horse battery"
CHEAP = PasswordHasher.from_parameters(CHEAPEST)
PROBE = "/api/v1/probe"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class AuthApp:
    app: FastAPI
    clock: Clock
    auth_dir: Path

    def state(self, client: TestClient) -> SignInState:
        state: SignInState = client.app.state.sign_in  # type: ignore[attr-defined]
        return state


def add_users(auth_dir: Path, *users: tuple[str, Role, str | None]) -> None:
    store = UserStore(auth_dir / "access.db", hasher=CHEAP)
    for name, role, patient in users:
        store.add(name, role, PASSWORD, patient_id=patient)
    store.close()


def auth_app(
    settings: Settings,
    auth_dir: Path,
    *,
    session: SessionPolicy | None = None,
    attempts: int = 10,
) -> AuthApp:
    """The app over ``settings``' data, its issuer and sessions in ``auth_dir``."""
    clock = Clock()
    config = IssuerConfig(ISS, ISS, TOKEN_URL)
    auth = WebAuth(
        open_issuer=lambda: Issuer.open(auth_dir, config, hasher=CHEAP, clock=clock),
        sessions_path=auth_dir / "sessions.db",
        session_policy=session or SessionPolicy(),
        address_limit=AddressLimitPolicy(attempts=attempts, window_s=300),
        clock=clock,
    )
    app = create_app(replace(data_sources(settings), auth=auth))

    @app.api_route(
        PROBE, methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    @access(Public())  # a test's window on the session middleware; carries no patient data
    async def probe(request: Request) -> dict[str, Any]:
        principal = getattr(request.state, "session_principal", None)
        if principal is None:
            return {"principal": None}
        return {
            "principal": {
                "subject": principal.subject,
                "client_id": principal.client_id,
                "kind": principal.kind,
                "roles": sorted(principal.roles),
                "scopes": str(principal.scopes),
                "token_id": principal.token_id,
                "issuer": principal.issuer,
                "patient": principal.patient,
                "expires_at": principal.expires_at,
            },
            "body": (await request.body()).decode(),
        }

    return AuthApp(app, clock, auth_dir)


@contextmanager
def client(app: AuthApp, base_url: str = LOCAL, **options: Any) -> Iterator[TestClient]:
    with TestClient(app.app, base_url=base_url, follow_redirects=False, **options) as c:
        yield c


SIGN_IN_TOKEN = re.compile(r'action="/auth/sign-in".*?name="csrf_token" value="([^"]+)"', re.S)


def sign_in_token(page: str) -> str:
    found = SIGN_IN_TOKEN.search(page)
    assert found, "the sign-in page has no form token"
    return found[1]


def sign_in(c: TestClient, name: str, password: str = PASSWORD, **fields: str) -> httpx2.Response:
    """Sign in the way a browser does: fetch the page (and its cookie), post the form."""
    token = sign_in_token(c.get("/sign-in").text)
    form = {"username": name, "password": password, "csrf_token": token, **fields}
    return c.post("/auth/sign-in", data=form)


def csrf_token(c: TestClient) -> str:
    found = c.get("/auth/session")
    assert found.status_code == 200, found.text
    token: str = found.json()["csrf_token"]
    return token


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, into included routers (FastAPI 0.16x includes a router as one route)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from api_routes(included.routes)
