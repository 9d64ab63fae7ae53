"""deploy/keycloak/vitaltrail-realm.json against what the API reads from a token.

No Keycloak runs in these tests (it needs Java, which the build machines do not have): the
realm file is read, tokens are built from it the way Keycloak builds them
(tests/keycloak_tokens.py), and checked by the API's own token verifier, configured from the
settings docker-compose.yml gives the api service, then decided by the access policy."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from access.consent import ConsentStatement, Grantee
from access.errors import TokenError
from access.fields import is_patient_id
from access.issuer import ROLE_SCOPES
from access.policy import AccessRequest, Policy
from access.scopes import ScopeSet
from access.tokens import Principal, TokenVerifier
from tests.compose_file import environment
from tests.keycloak_tokens import Person, RealmTokens, load_realm
from vitaltrail.runtime import token_verifier
from vitaltrail.settings import Settings

WARD, BACKEND = "vitaltrail-ward", "vitaltrail-backend-example"
VITALS = AccessRequest("vital-signs", ("patient-0",))


@pytest.fixture(scope="module")
def realm() -> dict[str, Any]:
    return load_realm()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The api service's settings, as docker-compose.yml sets them (an empty .env)."""
    for name, value in environment("api").items():
        monkeypatch.setenv(name, value)
    return Settings(data_dir=tmp_path)


class Keycloak:
    """The realm's discovery document and keys, where the api fetches them."""

    def __init__(self, realm: Mapping[str, Any], settings: Settings) -> None:
        assert settings.oidc_issuer is not None
        assert settings.oidc_discovery_url is not None
        base = settings.oidc_discovery_url.removesuffix("/.well-known/openid-configuration")
        self.tokens = RealmTokens(realm, settings.oidc_issuer)
        self.jwks_uri = f"{base}/protocol/openid-connect/certs"
        self.documents = {
            settings.oidc_discovery_url: {
                "issuer": settings.oidc_issuer,  # the public name: KC_HOSTNAME
                "jwks_uri": self.jwks_uri,  # the backchannel: the name the api used
                "token_endpoint": f"{base}/protocol/openid-connect/token",
            },
            self.jwks_uri: self.tokens.jwks(),
        }
        self.asked: list[str] = []

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.asked.append(url)
        return self.documents[url]


@pytest.fixture
def keycloak(realm: dict[str, Any], settings: Settings) -> Keycloak:
    return Keycloak(realm, settings)


@pytest.fixture
def verifier(keycloak: Keycloak, settings: Settings) -> Iterator[TokenVerifier]:
    yield token_verifier(settings, keycloak)
    assert set(keycloak.asked) <= set(keycloak.documents)


def person(role: str, **attributes: str) -> Person:
    return Person(f"{role}-1", (role,), attributes)


def test_the_realm_file_defines_the_realm_roles_and_clients(realm: dict[str, Any]) -> None:
    assert realm["realm"] == "vitaltrail"
    assert realm["enabled"] is True
    assert realm["sslRequired"] == "all"
    assert realm["registrationAllowed"] is False
    roles = {r["name"] for r in realm["roles"]["realm"]}
    assert roles == {"clinician", "patient", "admin", "app"}
    assert {c["clientId"] for c in realm["clients"]} == {WARD, BACKEND}
    assert realm["accessTokenLifespan"] <= 300  # SMART: short-lived access tokens


def test_no_person_and_no_password_is_in_the_repository(realm: dict[str, Any]) -> None:
    for user in realm.get("users", []):
        assert user.get("serviceAccountClientId"), f"{user['username']} is a person"
        assert "credentials" not in user
        assert set(user.get("realmRoles", [])) <= {"app"}
    text = json.dumps(realm).lower()
    assert '"secret"' not in text
    assert '"password"' not in text


def test_the_ward_client_is_public_with_the_code_flow_and_pkce_s256(
    realm: dict[str, Any],
) -> None:
    ward = next(c for c in realm["clients"] if c["clientId"] == WARD)
    assert ward["publicClient"] is True
    assert "secret" not in ward
    assert ward["attributes"]["pkce.code.challenge.method"] == "S256"
    assert ward["standardFlowEnabled"] is True
    for grant in ("implicitFlowEnabled", "directAccessGrantsEnabled", "serviceAccountsEnabled"):
        assert ward[grant] is False, grant
    for uri in ward["redirectUris"]:
        assert re.fullmatch(r"https://\$\{VITALTRAIL_PUBLIC_HOST\}:8443/[^*]*\*?", uri), uri


def test_the_backend_example_authenticates_with_private_key_jwt(realm: dict[str, Any]) -> None:
    backend = next(c for c in realm["clients"] if c["clientId"] == BACKEND)
    assert backend["clientAuthenticatorType"] == "client-jwt"
    assert backend["publicClient"] is False
    assert backend["serviceAccountsEnabled"] is True
    assert backend["standardFlowEnabled"] is False
    assert backend["directAccessGrantsEnabled"] is False
    assert backend["attributes"]["use.jwks.url"] == "true"
    assert backend["attributes"]["jwks.url"].startswith("https://")
    assert backend["attributes"]["client_credentials.use_refresh_token"] == "false"
    assert "secret" not in backend


def test_each_role_is_delegated_what_the_embedded_issuer_delegates(realm: dict[str, Any]) -> None:
    """Both issuers' tokens carry the same SMART scopes for a role: the ward client's default
    client scopes, each given to the roles its role scope mappings name."""
    tokens = RealmTokens(realm, "https://kc.test/realms/vitaltrail")
    for role, expected in ROLE_SCOPES.items():
        scope = tokens.for_person(WARD, person(role))["scope"]
        assert ScopeSet.parse(scope).scopes == ScopeSet.parse(expected).scopes, role
        assert ScopeSet.parse(scope).other == {"openid"}
    for scope in ScopeSet.parse(tokens.for_service_account(BACKEND)["scope"]).scopes:
        assert scope.context == "system"


def test_the_patient_attribute_is_set_by_admins_only_and_is_a_patient_id(
    realm: dict[str, Any],
) -> None:
    (provider,) = realm["components"]["org.keycloak.userprofile.UserProfileProvider"]
    (text,) = provider["config"]["kc.user.profile.config"]
    profile = json.loads(text)
    (patient,) = (a for a in profile["attributes"] if a["name"] == "patient")
    assert patient["permissions"]["edit"] == ["admin"]  # a patient cannot make themselves another
    assert "unmanagedAttributePolicy" not in profile  # no other attribute can be set at all
    pattern = re.compile(patient["validations"]["pattern"]["pattern"])
    for candidate in ("patient-0", "p.17_a", "A" * 64, "", "-p", "A" * 65, "p/1", "p 1", "pä"):
        assert bool(pattern.fullmatch(candidate)) == is_patient_id(candidate), candidate


def test_the_mappers_write_exactly_the_claims_the_api_reads(
    realm: dict[str, Any], settings: Settings
) -> None:
    """One client scope, default on both clients, holds every mapper: sub, the API's audience,
    the roles where oidc_roles_claim looks, and the patient the policy reads."""
    (api_scope,) = (s for s in realm["clientScopes"] if s.get("protocolMappers"))
    for client in realm["clients"]:
        assert api_scope["name"] in client["defaultClientScopes"]
        assert not client.get("protocolMappers")
    written = {}
    for mapper in api_scope["protocolMappers"]:
        config = mapper["config"]
        assert config["access.token.claim"] == "true"
        written[mapper["protocolMapper"]] = config.get("claim.name")
        if mapper["protocolMapper"] == "oidc-audience-mapper":
            assert config["included.custom.audience"] == settings.api_audience
    assert written == {
        "oidc-sub-mapper": None,
        "oidc-audience-mapper": None,
        "oidc-usermodel-realm-role-mapper": settings.oidc_roles_claim,
        "oidc-usermodel-attribute-mapper": "patient",
    }


def test_realm_tokens_pass_the_api_check_with_the_compose_settings(
    keycloak: Keycloak, verifier: TokenVerifier, settings: Settings
) -> None:
    tokens = keycloak.tokens
    nurse = person("clinician")
    principal = verifier.verify(tokens.sign(tokens.for_person(WARD, nurse)))
    assert principal.issuer == settings.oidc_issuer
    assert (principal.kind, principal.subject, principal.client_id) == ("user", nurse.id, WARD)
    assert "clinician" in principal.roles
    assert principal.token_id.startswith("onrtac:")
    assert principal.scopes.permits("user", "Observation", "r")
    assert principal.patient is None

    patient = verifier.verify(
        tokens.sign(tokens.for_person(WARD, person("patient", patient="p-7")))
    )
    assert patient.patient == "p-7"
    assert patient.scopes.permits("patient", "Observation", "r")
    assert not patient.scopes.permits("user", "Observation", "r")

    admin = verifier.verify(tokens.sign(tokens.for_person(WARD, person("admin"))))
    assert "admin" in admin.roles
    assert not admin.scopes.permits("user", "Observation", "r")

    app = verifier.verify(tokens.sign(tokens.for_service_account(BACKEND)))
    assert (app.kind, app.subject, app.client_id) == ("app", BACKEND, BACKEND)
    assert app.scopes.permits("system", "Observation", "r")
    assert app.claims["sub"] != BACKEND  # Keycloak's sub: the service account, not the client


def test_the_policy_decides_realm_tokens_by_role_care_team_and_consent(
    keycloak: Keycloak, verifier: TokenVerifier
) -> None:
    tokens = keycloak.tokens
    nurse, outsider = person("clinician"), person("clinician")
    asked: list[Grantee] = []

    def consent(patient: str, grantee: Grantee, data: str, purpose: str, at_ms: int) -> Any:
        asked.append(grantee)
        return ConsentStatement.grant(
            patient, 0, at_ms, grantee, data=[data], purpose=[purpose], start_ms=0
        )

    teams = {nurse.id: frozenset({"patient-0"})}  # care teams name Keycloak users by their sub
    policy = Policy(lambda user: teams.get(user, frozenset()), consent)

    def decide(claims: Mapping[str, Any], request: AccessRequest = VITALS) -> tuple[bool, str]:
        principal: Principal = verifier.verify(tokens.sign(claims))
        decision = policy.decide(principal, request, int(time.time() * 1000))
        return decision.permit, decision.reason

    assert decide(tokens.for_person(WARD, nurse)) == (True, "care-team")
    assert decide(tokens.for_person(WARD, outsider)) == (False, "not-in-care-team")
    own = tokens.for_person(WARD, person("patient", patient="patient-0"))
    assert decide(own) == (True, "self")
    other = tokens.for_person(WARD, person("patient", patient="patient-1"))
    assert decide(other) == (False, "not-own-record")
    assert decide(tokens.for_person(WARD, person("patient"))) == (False, "no-patient-context")
    assert decide(tokens.for_person(WARD, person("admin"))) == (
        False,
        "admin-reads-no-patient-data",
    )
    assert decide(tokens.for_person(WARD, Person("visitor", ()))) == (False, "no-role")
    assert decide(tokens.for_service_account(BACKEND)) == (True, "consent")
    assert asked == [Grantee("app", BACKEND)]  # consents name the app by its client id


def test_a_token_without_the_api_audience_is_refused(
    keycloak: Keycloak, verifier: TokenVerifier
) -> None:
    """What the audience mapper is for: Keycloak's ID tokens and tokens for other services
    (typ JWT like access tokens here) do not name this API."""
    claims = keycloak.tokens.for_person(WARD, person("clinician"))
    for audience in (WARD, ["account"]):
        with pytest.raises(TokenError) as refused:
            verifier.verify(keycloak.tokens.sign({**claims, "aud": audience}))
        assert refused.value.reason == "wrong_audience"
    del claims["aud"]
    with pytest.raises(TokenError) as refused:
        verifier.verify(keycloak.tokens.sign(claims))
    assert refused.value.reason == "missing_claim"


def test_the_app_role_makes_a_token_its_clients_so_only_service_accounts_hold_it(
    realm: dict[str, Any], keycloak: Keycloak, verifier: TokenVerifier
) -> None:
    """Whoever holds the app role acts as the client that asked for the token (the trail names
    that client, consents must be to it): the realm gives the role to service accounts only."""
    robot = keycloak.tokens.for_person(WARD, Person("robot", ("app",)))
    principal = verifier.verify(keycloak.tokens.sign(robot))
    assert (principal.kind, principal.subject) == ("app", WARD)
    holders = [u for u in realm["users"] if "app" in u.get("realmRoles", [])]
    assert holders
    assert all(u.get("serviceAccountClientId") for u in holders)
    groups = json.dumps(realm.get("groups", [])) + json.dumps(realm["roles"])
    assert '"composites"' not in groups  # no group or composite role hands it out
