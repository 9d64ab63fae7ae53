"""The embedded issuer over HTTP: the token endpoint for apps (SMART Backend Services) and the
discovery documents a resource server or an app reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.jwk import ECKey, Key, RSAKey

from access.issuer import ASSERTION_TYPE, ROLE_SCOPES
from access.jwks import discover
from access.scopes import ScopeSet
from access.tokens import TokenVerifier, trust_discovered
from dashboards.auth_routes import PUBLIC_ROUTES
from dashboards.auth_routes import router as auth_router
from tests.auth_app import ISS, TOKEN_URL, AuthApp, api_routes, auth_app, client
from tests.populated import populate
from vitaltrail.settings import Settings

ES384_KEY = ECKey.generate_key("P-384", parameters={"kid": "es"}, private=True)
RS384_KEY = RSAKey.generate_key(2048, parameters={"kid": "rs"}, private=True)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return populate(tmp_path_factory.mktemp("ward") / "data", patients=1, readings=1)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[AuthApp, TestClient]]:
    app = auth_app(settings, tmp_path)
    with client(app) as c:
        jwks = {"keys": [ES384_KEY.as_dict(private=False), RS384_KEY.as_dict(private=False)]}
        app.state(c).issuer.apps.register(
            "tele-1", "Tele clinic", jwks, "system/Observation.rs system/Patient.rs"
        )
        yield app, c


def assertion(app: AuthApp, key: Key = ES384_KEY, alg: str = "ES384", **changes: Any) -> str:
    now = int(app.clock.now)
    claims: dict[str, Any] = {
        "iss": "tele-1",
        "sub": "tele-1",
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": f"a-{now}-{alg}",
        **changes,
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=[alg])


def token_form(signed: str, scope: str = "system/Observation.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }


def refused(c: TestClient, form: dict[str, str], error: str, status: int) -> str:
    """Post ``form``; the answer must be the RFC 6749 §5.2 ``error``; returns its text."""
    answer = c.post("/auth/token", data=form)
    assert answer.status_code == status, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert "access_token" not in answer.text
    description: str = body["error_description"]
    return description


@pytest.mark.parametrize(("key", "alg"), [(ES384_KEY, "ES384"), (RS384_KEY, "RS384")])
def test_an_app_gets_a_token_for_an_es384_or_rs384_assertion(
    served: tuple[AuthApp, TestClient], key: Key, alg: str
) -> None:
    app, c = served
    answer = c.post("/auth/token", data=token_form(assertion(app, key, alg)))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Observation.rs"
    assert 0 < body["expires_in"] <= 300
    assert "refresh_token" not in body
    # a resource server that knows only the issuer's URL finds its keys and accepts the token
    trust = trust_discovered(ISS, lambda url: c.get(url.removeprefix(ISS)).json())
    principal = TokenVerifier(ISS, [trust], clock=app.clock).verify(body["access_token"])
    assert principal.kind == "app"
    assert principal.client_id == principal.subject == "tele-1"
    assert str(principal.scopes) == "system/Observation.rs"


def test_a_replayed_assertion_is_refused(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    form = token_form(assertion(app))
    assert c.post("/auth/token", data=form).status_code == 200
    assert refused(c, form, "invalid_client", 401) == "this assertion was used"
    assert app.state(c).issuer.refusals["token_replayed_jti"] == 1


def test_an_assertion_for_another_audience_is_refused(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    form = token_form(assertion(app, aud="https://elsewhere.test/token"))
    assert "aud" in refused(c, form, "invalid_client", 401)
    assert app.state(c).issuer.refusals["token_wrong_audience"] == 1


def test_an_expired_assertion_is_refused(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    form = token_form(assertion(app, exp=int(app.clock.now) - 120))
    assert "expired" in refused(c, form, "invalid_client", 401)
    assert app.state(c).issuer.refusals["token_expired"] == 1


def test_an_assertion_signed_by_a_stranger_is_refused(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    stranger = ECKey.generate_key("P-384", parameters={"kid": "es"}, private=True)
    refused(c, token_form(assertion(app, stranger)), "invalid_client", 401)
    assert app.state(c).issuer.refusals["token_bad_signature"] == 1


def test_other_grants_and_scopes_are_refused(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    password_grant = {**token_form(assertion(app)), "grant_type": "password"}
    refused(c, password_grant, "unsupported_grant_type", 400)
    outside = token_form(assertion(app, jti="other"), scope="system/Consent.cruds")
    refused(c, outside, "invalid_scope", 400)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json", "token_form_not_form"),
        (b"grant_type=client_credentials&grant_type=password", None, "token_form_repeated"),
        (b"grant_type=" + b"x" * 20_000, None, "token_form_too_large"),
        (b"grant_type=%FF%FE", None, "token_form_malformed"),
        (b"&".join(b"f%d=1" % i for i in range(40)), None, "token_form_malformed"),
    ],
)
def test_a_body_that_is_not_a_small_form_is_an_invalid_request(
    served: tuple[AuthApp, TestClient], body: bytes, content_type: str | None, reason: str
) -> None:
    app, c = served
    headers = {"content-type": content_type or "application/x-www-form-urlencoded"}
    answer = c.post("/auth/token", content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert app.state(c).issuer.refusals[reason] == 1


def test_refusals_are_counted_in_the_metrics(settings: Settings, tmp_path: Path) -> None:
    scrape = tmp_path / "metrics.token"
    scrape.write_text("scrape-me\n")
    app = auth_app(settings.model_copy(update={"metrics_token_file": scrape}), tmp_path)
    with client(app) as c:
        jwks = {"keys": [ES384_KEY.as_dict(private=False)]}
        app.state(c).issuer.apps.register("tele-1", "Tele clinic", jwks, "system/Observation.rs")
        form = token_form(assertion(app))
        c.post("/auth/token", data=form)
        c.post("/auth/token", data=form)
        assert c.get("/metrics").status_code == 401, "/metrics is not public"
        metrics = c.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).text
    assert (
        'vitaltrail_auth_refusals_total{reason="token_replayed_jti",source="issuer"} 1.0' in metrics
    )


# --- discovery ------------------------------------------------------------------------------


def test_the_smart_configuration_says_what_a_backend_app_needs(
    served: tuple[AuthApp, TestClient],
) -> None:
    _, c = served
    doc = c.get("/.well-known/smart-configuration").json()
    assert doc["issuer"] == ISS
    assert doc["token_endpoint"] == TOKEN_URL
    assert doc["jwks_uri"] == ISS + "/.well-known/jwks.json"
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["ES384", "RS384"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(doc["capabilities"])
    scopes = set(doc["scopes_supported"])
    assert "system/*.rs" in scopes
    for text in ROLE_SCOPES.values():
        assert {str(s) for s in ScopeSet.parse(text).scopes} <= scopes
    # SMART clients look for it at the FHIR base: the same document there, with no token
    at_base = c.get("/fhir/.well-known/smart-configuration")
    assert (at_base.status_code, at_base.json()) == (200, doc)


def test_openid_discovery_finds_the_issuer_and_its_keys(
    served: tuple[AuthApp, TestClient],
) -> None:
    _, c = served
    doc = c.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISS
    assert doc["jwks_uri"] == ISS + "/.well-known/jwks.json"
    assert doc["token_endpoint"] == TOKEN_URL
    assert "capabilities" not in doc  # SMART's own words stay in smart-configuration
    meta = discover(ISS, lambda url: c.get(url.removeprefix(ISS)).json())
    assert (meta.issuer, meta.jwks_uri, meta.token_endpoint) == (
        ISS,
        ISS + "/.well-known/jwks.json",
        TOKEN_URL,
    )


def test_the_jwk_set_holds_the_public_key_only(served: tuple[AuthApp, TestClient]) -> None:
    app, c = served
    answer = c.get("/.well-known/jwks.json")
    assert answer.headers["content-type"] == "application/jwk-set+json"
    keys = answer.json()["keys"]
    assert len(keys) == 1
    assert (keys[0]["kty"], keys[0]["alg"]) == ("EC", "ES256")
    assert keys[0]["kid"]
    assert "d" not in keys[0]
    assert answer.json() == app.state(c).issuer.jwks()
    # and the OpenAPI document says so (it said application/json)
    documented = c.get("/openapi.json").json()["paths"]["/.well-known/jwks.json"]["get"]
    assert set(documented["responses"]["200"]["content"]) == {"application/jwk-set+json"}


def test_every_auth_route_is_declared_public() -> None:
    """The routes of this module carry no patient data: the list other code trusts is whole."""
    served = {
        (method, route.path)
        for route in api_routes(auth_router.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == PUBLIC_ROUTES
