"""The token check against a real OpenID provider (npm oidc-provider, OpenID Certified) that the
test starts: found by discovery, its keys fetched from its jwks_uri, its RFC 9068 access tokens
accepted for this API and refused for another audience or from an issuer not trusted."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from access.errors import ProviderError, TokenError
from access.issuer import Issuer, IssuerConfig
from access.jwks import HttpJson, JwkSetCache, discover
from access.tokens import TokenVerifier, TrustedIssuer, trust_discovered
from tests.oidc.provider import OidcProvider
from vitaltrail.mosquitto import free_port

pytestmark = pytest.mark.integration

AUD = "https://vitaltrail.test/api"
OTHER_AUD = "https://other.test/api"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    server = OidcProvider(tmp_path_factory.mktemp("oidc"), audiences=(AUD, OTHER_AUD)).start()
    yield server
    server.stop()


@pytest.fixture
def http() -> Iterator[HttpJson]:
    client = HttpJson(timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Issuer]:
    config = IssuerConfig("https://vitaltrail.test", AUD, "https://vitaltrail.test/oauth/token")
    issuer = Issuer.open(tmp_path, config, hasher=PasswordHasher.from_parameters(CHEAPEST))
    yield issuer
    issuer.close()


def trust(provider: OidcProvider, http: HttpJson) -> tuple[TrustedIssuer, JwkSetCache]:
    trusted = trust_discovered(provider.issuer, http)
    assert trusted.issuer == provider.issuer
    assert trusted.require_at_jwt  # oidc-provider writes typ at+jwt: no leniency needed
    assert isinstance(trusted.keys, JwkSetCache)
    assert trusted.keys.jwks_uri == f"{provider.issuer}/jwks"
    return trusted, trusted.keys


def test_discovery_document(provider: OidcProvider, http: HttpJson) -> None:
    meta = discover(provider.issuer, http)
    assert meta.issuer == provider.issuer
    assert meta.token_endpoint == f"{provider.issuer}/token"


def test_a_token_the_provider_issued_is_verified_via_discovery(
    provider: OidcProvider, http: HttpJson
) -> None:
    trusted, cache = trust(provider, http)
    check = TokenVerifier(AUD, [trusted])
    response = provider.token()
    principal = check.verify(response["access_token"])
    assert principal.issuer == provider.issuer
    assert principal.subject == provider.client_id
    assert principal.client_id == provider.client_id
    assert principal.kind == "app"
    assert principal.token_id
    assert principal.scopes.permits("system", "Observation", "s")
    assert not principal.scopes.permits("system", "AuditEvent", "r")
    # the JWK set is fetched once, then served from the cache
    check.verify(provider.token()["access_token"])
    assert cache.fetches == 1


def test_a_token_for_another_audience_is_refused(provider: OidcProvider, http: HttpJson) -> None:
    trusted, _ = trust(provider, http)
    token = provider.token(resource=OTHER_AUD)["access_token"]
    with pytest.raises(TokenError) as refused:
        TokenVerifier(AUD, [trusted]).verify(token)
    assert refused.value.reason == "wrong_audience"
    # the same token is good where it was meant to go
    assert TokenVerifier(OTHER_AUD, [trusted]).verify(token).subject == provider.client_id


def test_a_token_from_an_issuer_not_trusted_is_refused(
    provider: OidcProvider, http: HttpJson, embedded: Issuer
) -> None:
    token = provider.token()["access_token"]
    with pytest.raises(TokenError) as refused:
        TokenVerifier(AUD, [embedded.trusted_issuer()]).verify(token)
    assert refused.value.reason == "wrong_issuer"
    # trusting both, each issuer's tokens pass, each under its own name
    trusted, _ = trust(provider, http)
    both = TokenVerifier(AUD, [embedded.trusted_issuer(), trusted])
    assert both.verify(token).issuer == provider.issuer
    embedded.users.add("dr-ng", "clinician", "correct horse battery")
    mine = embedded.sign_in("dr-ng", "correct horse battery").access_token
    assert both.verify(mine).issuer == "https://vitaltrail.test"


def test_a_provider_token_with_a_changed_claim_is_refused(
    provider: OidcProvider, http: HttpJson
) -> None:
    trusted, _ = trust(provider, http)
    header, payload, signature = provider.token()["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "system/*.cruds"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as refused:
        TokenVerifier(AUD, [trusted]).verify(f"{header}.{forged}.{signature}")
    assert refused.value.reason == "bad_signature"


def test_discovery_refuses_a_document_naming_another_issuer(
    provider: OidcProvider, http: HttpJson
) -> None:
    # the same server under another spelling of its name (OpenID Discovery §4.3: exact match)
    with pytest.raises(ProviderError, match="expected"):
        discover(f"{provider.issuer}/", http)


def test_an_unreachable_provider_is_a_provider_error(http: HttpJson) -> None:
    with pytest.raises(ProviderError):
        discover(f"http://127.0.0.1:{free_port()}", http)
