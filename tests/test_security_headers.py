"""The headers a reviewer checks first, on every route of the app, and no server banner from
the real uvicorn the commands run."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from dashboards.app import create_app
from dashboards.security_headers import CONTENT_SECURITY_POLICY
from tests.auth_app import api_routes, auth_app, client
from tests.populated import populate
from tests.servers import free_port, serving
from vitaltrail.runtime import data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

EVERYWHERE = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
SAMPLE = {
    "patient_id": "patient-0", "code": "8867-4", "index": "0", "height": "0", "sub_id": "s1",
    "observation_id": "e1-8867-4", "provenance_id": "pe1-8867-4", "device_id": "patient-0-band",
    "alert_id": "a1",
}  # fmt: skip
QUERY = "?old=1&new=1"  # the parameters a route may need beside its path


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return populate(tmp_path_factory.mktemp("ward") / "data", patients=1, readings=1)


def requests_for(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, url) for every route of the app, path parameters filled in."""
    for route in app.routes:
        if isinstance(route, Mount):
            yield "GET", route.path + "/style.css"
            yield "GET", route.path + "/no-such-file"
        elif isinstance(route, Route):
            yield "GET", route.path
    for api in api_routes(app.routes):
        path = api.path
        for name, value in SAMPLE.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, f"no sample value for a parameter of {api.path}"
        for method in sorted((api.methods or set()) - {"HEAD"}):
            yield method, path + QUERY


def test_every_route_sends_the_security_headers(settings: Settings, tmp_path: Path) -> None:
    app = auth_app(settings, tmp_path)
    seen: list[str] = []
    with client(app, raise_server_exceptions=False) as c:
        for method, url in [*requests_for(app.app), ("GET", "/nowhere"), ("DELETE", "/healthz")]:
            answer = c.request(method, url)
            seen.append(f"{method} {url.split('?')[0]}")
            assert answer.status_code < 500, (method, url, answer.text)
            for name, value in EVERYWHERE.items():
                assert answer.headers.get(name) == value, (method, url, name)
            assert "strict-transport-security" not in answer.headers  # plain HTTP
            assert "server" not in answer.headers
            path = url.split("?")[0]
            if path.startswith(("/api/", "/auth/", "/sign-in")):
                assert answer.headers["cache-control"] == "no-store", (method, url)
    # the enumeration reached each kind of route, including the sign-in and issuer ones
    for expected in (
        "GET /api/v1/patients",
        "GET /api/v1/readings/0/proof",
        "POST /auth/token",
        "POST /auth/sign-in",
        "GET /.well-known/jwks.json",
        "GET /docs",
        "GET /openapi.json",
        "GET /static/style.css",
        "GET /",
    ):
        assert expected in seen


def test_the_app_without_sign_in_still_sends_the_headers(settings: Settings) -> None:
    app = create_app(replace(data_sources(settings), auth=None))
    with TestClient(app) as c:
        answer = c.get("/api/v1/patients")
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["cache-control"] == "no-store"
        assert c.get("/sign-in").status_code == 404


def test_patient_data_is_never_cached_whatever_the_route_says(
    settings: Settings, tmp_path: Path
) -> None:
    app = auth_app(settings, tmp_path)

    @app.app.get("/api/v1/cacheable")
    async def cacheable() -> dict[str, str]:
        return {}

    with client(app) as c:
        answer = c.get("/api/v1/cacheable")
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["pragma"] == "no-cache"
        assert "no-store" not in c.get("/static/style.css").headers.get("cache-control", "")
        assert c.get("/.well-known/jwks.json").headers["cache-control"] == "max-age=300"


def test_hsts_only_over_tls(settings: Settings, tmp_path: Path) -> None:
    app = auth_app(settings, tmp_path)
    with client(app, "https://ward.example") as c:
        hsts = c.get("/healthz").headers["strict-transport-security"]
        assert hsts == "max-age=31536000; includeSubDomains"
    with client(app, "http://ward.example") as c:
        assert "strict-transport-security" not in c.get("/healthz").headers


def uvicorn_serving(
    settings: Settings, trusted_proxies: str = "127.0.0.1"
) -> AbstractContextManager[int]:
    """The app on the real uvicorn the commands run (vitaltrail/services.py)."""
    app = create_app(data_sources(settings))
    return serving(http_server(app, "127.0.0.1", free_port(), trusted_proxies=trusted_proxies))


def get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_uvicorn_sends_no_server_banner(settings: Settings) -> None:
    with uvicorn_serving(settings) as port:
        for path in ("/healthz", "/sign-in", "/nowhere", "/static/style.css"):
            response = get(port, path)
            names = [name.lower() for name, _ in response.getheaders()]
            assert "server" not in names, path
            assert "date" in names
            assert response.getheader("x-content-type-options") == "nosniff"


def test_a_trusted_proxy_can_say_the_request_came_over_tls(settings: Settings) -> None:
    """Behind a TLS proxy on this machine (uvicorn trusts 127.0.0.1 by default) the request
    counts as https: HSTS, and the sign-in cookie is Secure; from a proxy it does not trust,
    the same header changes nothing."""
    forwarded = {"x-forwarded-proto": "https", "host": "ward.example"}
    with uvicorn_serving(settings) as port:
        response = get(port, "/sign-in", forwarded)
        assert response.getheader("strict-transport-security")
        assert "; Secure" in (response.getheader("set-cookie") or "")
        assert get(port, "/sign-in").getheader("strict-transport-security") is None
    with uvicorn_serving(settings, trusted_proxies="192.0.2.1") as port:
        response = get(port, "/sign-in", forwarded)
        assert response.getheader("strict-transport-security") is None
