"""The API's token check in HTTP terms: 401 with WWW-Authenticate, 403 with insufficient_scope,
the session principal hook, the metrics scrape token, refusals counted by reason, and a real
OpenID provider trusted by its discovery URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from access.scopes import ScopeSet
from access.tokens import Principal
from dashboards.access_deps import SESSION_PRINCIPAL
from dashboards.app import create_app
from tests.api_access import Tokens, assign, bearer, consent
from tests.oidc.provider import OidcProvider
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

AUDIENCE = "https://vitaltrail.test/api"  # RFC 8707: a resource indicator is an absolute URI


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = populate(tmp_path / "data", patients=2, readings=1)
    assign(settings, "ward", ["dr-ada"], ["patient-0"])
    return settings


def _metric(client: TestClient, admin: dict[str, str], line: str) -> bool:
    return line in client.get("/metrics", headers=admin).text


def test_refusals_say_why_and_are_counted(settings: Settings) -> None:
    tokens = Tokens(settings)
    now = int(time.time())
    expired = tokens.sign(tokens.claims(exp=now - 100, iat=now - 400, nbf=None))
    admin = tokens.headers("root", "admin")
    no_scope = tokens.sign(tokens.claims(scope="user/Device.rs"))
    with TestClient(create_app(data_sources(settings))) as c:
        missing = c.get("/api/v1/patients/patient-0/vitals")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        old = c.get("/api/v1/patients/patient-0/vitals", headers=bearer(expired))
        assert old.status_code == 401
        assert old.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        scoped = c.get("/api/v1/patients/patient-0/vitals", headers=bearer(no_scope))
        assert scoped.status_code == 403
        assert 'error="insufficient_scope"' in scoped.headers["WWW-Authenticate"]
        refused = c.get(
            "/api/v1/patients/patient-1/vitals", headers=tokens.headers("dr-ada", "clinician")
        )
        assert refused.status_code == 403
        assert refused.json()["detail"] == "access refused: not-in-care-team"
        assert c.get("/metrics", headers=tokens.headers("dr-ada", "clinician")).status_code == 403
        for line in (
            'vitaltrail_api_tokens_refused_total{reason="missing"} 1.0',
            'vitaltrail_api_tokens_refused_total{reason="expired"} 1.0',
            'vitaltrail_api_access_decisions_total{outcome="deny",reason="insufficient-scope"} 1.0',
            'vitaltrail_api_access_decisions_total{outcome="deny",reason="not-in-care-team"} 1.0',
            'vitaltrail_api_forbidden_total{reason="not-admin"} 1.0',
        ):
            assert _metric(c, admin, line), line
    tokens.close()


def test_a_session_principal_is_taken_like_a_verified_token(settings: Settings) -> None:
    ada = Principal(
        subject="dr-ada",
        client_id="vitaltrail:web",
        kind="user",
        roles=frozenset({"clinician"}),
        scopes=ScopeSet.parse("user/Observation.rs"),
        token_id="session-1",
        issuer="vitaltrail",
        expires_at=int(time.time()) + 300,
    )

    async def session(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.cookies.get("session") == "ada":  # what the sign-in engineer's middleware does
            setattr(request.state, SESSION_PRINCIPAL, ada)
        return await call_next(request)

    app = create_app(data_sources(settings))
    app.add_middleware(BaseHTTPMiddleware, dispatch=session)
    with TestClient(app) as c:
        c.cookies.set("session", "ada")
        assert [p["patient_id"] for p in c.get("/api/v1/patients").json()] == ["patient-0"]
        assert c.get("/api/v1/patients/patient-1/vitals").status_code == 403
        # a bearer header, when sent, is the caller (and a bad one is refused)
        assert c.get("/api/v1/patients", headers=bearer("not.a.token")).status_code == 401
        c.cookies.clear()
        assert c.get("/api/v1/patients").status_code == 401


def test_metrics_take_the_scrape_token(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "scrape").write_text("a-long-random-scrape-token\n")
    scraped = settings.model_copy(update={"metrics_token_file": tmp_path / "scrape"})
    with TestClient(create_app(data_sources(scraped))) as c:
        ok = c.get("/metrics", headers=bearer("a-long-random-scrape-token"))
        assert ok.status_code == 200
        assert "vitaltrail_api_reads_pending" in ok.text
        assert c.get("/metrics", headers=bearer("a-wrong-token")).status_code == 401
        latin = {b"Authorization": "Bearer caf\u00e9".encode("latin-1")}
        assert c.get("/metrics", headers=latin).status_code == 401  # compared as bytes, no 500
        assert c.get("/metrics").status_code == 401


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    server = OidcProvider(tmp_path_factory.mktemp("oidc"), audiences=(AUDIENCE,)).start()
    yield server
    server.stop()


@pytest.mark.integration
def test_an_external_openid_provider_named_by_its_issuer_url(
    settings: Settings, provider: OidcProvider
) -> None:
    external = settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "trust_embedded_issuer": False,
            "api_audience": AUDIENCE,
        }
    )
    consent(external, "patient-0", provider.client_id)
    token = provider.token()["access_token"]
    embedded = Tokens(settings).headers("dr-ada", "clinician")
    with TestClient(create_app(data_sources(external))) as c:
        ok = c.get("/api/v1/patients/patient-0/vitals", headers=bearer(token))
        assert ok.status_code == 200, ok.text
        assert ok.json()["patient_id"] == "patient-0"
        assert c.get("/api/v1/patients/patient-1/vitals", headers=bearer(token)).status_code == 403
        # the embedded issuer is not trusted in this deployment
        assert c.get("/api/v1/patients/patient-0/vitals", headers=embedded).status_code == 401
