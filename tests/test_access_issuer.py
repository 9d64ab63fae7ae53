"""The embedded issuer: password sign-in, SMART Backend Services assertions, and the tokens it
signs checked by the same verifier the API uses."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey, Key, RSAKey

from access.errors import SignInError, TokenError, TokenRequestError, UserDisabled
from access.issuer import (
    ASSERTION_TYPE,
    ROLE_SCOPES,
    Issuer,
    IssuerConfig,
    load_or_create_signing_key,
)
from access.jwks import discover
from access.scopes import ScopeSet
from access.tokens import TokenVerifier
from access.users import SignInPolicy

ISS = "https://vitaltrail.test"
AUD = "https://vitaltrail.test/api"
TOKEN_URL = "https://vitaltrail.test/oauth/token"
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(tmp_path: Path, clock: Clock) -> Iterator[Issuer]:
    config = IssuerConfig(ISS, AUD, TOKEN_URL)
    opened = Issuer.open(
        tmp_path, config, hasher=PasswordHasher.from_parameters(CHEAPEST), clock=clock
    )
    opened.users.policy = SignInPolicy(max_failures=3, window_s=60, lockout_s=300)
    yield opened
    opened.close()


def verifier(issuer: Issuer, clock: Clock) -> TokenVerifier:
    return TokenVerifier(AUD, [issuer.trusted_issuer()], clock=clock)


# --- the signing key ----------------------------------------------------------------------


def test_signing_key_is_created_once_private_and_published(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys" / "token-issuer.jwk"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key.kid == key.thumbprint()
    again = load_or_create_signing_key(path)
    assert again.as_dict(private=True) == key.as_dict(private=True)
    published = json.loads(path.with_suffix(".jwks.json").read_text())
    assert published["keys"][0]["kid"] == key.kid
    assert "d" not in published["keys"][0]


def test_a_key_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-issuer.jwk"
    path.write_text(json.dumps(ECKey.generate_key("P-384", private=True).as_dict(private=True)))
    with pytest.raises(ValueError, match="ES256"):
        load_or_create_signing_key(path)


def test_the_issuer_keeps_its_key_beside_the_ledgers(issuer: Issuer, tmp_path: Path) -> None:
    on_disk = json.loads((tmp_path / "keys" / "token-issuer.jwk").read_text())
    assert on_disk["kid"] == issuer.jwks()["keys"][0]["kid"]
    assert (tmp_path / "access.db").exists()


def test_metadata_tells_a_backend_app_what_it_needs(issuer: Issuer) -> None:
    meta = issuer.metadata()
    assert meta["issuer"] == ISS
    assert meta["token_endpoint"] == TOKEN_URL
    assert meta["jwks_uri"] == f"{ISS}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert meta["token_endpoint_auth_signing_alg_values_supported"] == ["ES384", "RS384"]
    assert "client-confidential-asymmetric" in meta["capabilities"]
    assert "permission-v2" in meta["capabilities"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "patient/Observation.rs" in meta["scopes_supported"]
    # it is the same document discovery reads: the API can trust its own issuer that way too
    assert discover(ISS, lambda url: meta).jwks_uri == meta["jwks_uri"]


def test_jwks_publishes_only_the_public_key(issuer: Issuer) -> None:
    (key,) = issuer.jwks()["keys"]
    assert key["kty"] == "EC"
    assert key["crv"] == "P-256"
    assert "d" not in key


# --- people --------------------------------------------------------------------------------


def test_good_sign_in_gives_a_token_the_api_accepts(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    issued = issuer.sign_in("dr-ng", PASSWORD)
    principal = verifier(issuer, clock).verify(issued.access_token)
    assert (principal.subject, principal.kind, principal.roles) == (
        "dr-ng",
        "user",
        frozenset({"clinician"}),
    )
    assert principal.token_id == issued.token_id
    assert principal.expires_at == clock.now + 300
    assert principal.scopes.permits("user", "Observation", "s")
    header = jws.extract_compact(issued.access_token.encode()).headers()
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert issued.response()["token_type"] == "Bearer"


def test_patient_token_carries_the_patient_context(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("pat", "patient", PASSWORD, patient_id="p-7")
    issued = issuer.sign_in("pat", PASSWORD)
    principal = verifier(issuer, clock).verify(issued.access_token)
    assert principal.patient == "p-7"
    assert issued.response()["patient"] == "p-7"
    assert principal.scopes == ScopeSet.parse(ROLE_SCOPES["patient"])
    assert principal.scopes.permits("patient", "Observation", "r")
    assert not principal.scopes.permits("user", "Observation", "r")


def test_admin_token_delegates_no_clinical_data(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("root", "admin", PASSWORD)
    principal = verifier(issuer, clock).verify(issuer.sign_in("root", PASSWORD).access_token)
    for resource in ("Observation", "Patient", "Provenance", "AuditEvent", "Consent"):
        for context in ("user", "patient", "system"):
            assert not principal.scopes.permits(context, resource, "r")


def test_token_expires_with_its_ttl(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    token = issuer.sign_in("dr-ng", PASSWORD).access_token
    clock.now += 300 + 30
    with pytest.raises(TokenError) as expired:
        verifier(issuer, clock).verify(token)
    assert expired.value.reason == "expired"


def test_wrong_password_and_unknown_user_get_the_same_answer(issuer: Issuer) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    with pytest.raises(SignInError) as wrong:
        issuer.sign_in("dr-ng", "not the password")
    with pytest.raises(SignInError) as unknown:
        issuer.sign_in("nobody", PASSWORD)
    assert wrong.value.reason == unknown.value.reason == "invalid_credentials"
    assert str(wrong.value) == str(unknown.value)


def test_an_overlong_password_is_refused(issuer: Issuer) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    with pytest.raises(SignInError, match="invalid_credentials"):
        issuer.sign_in("dr-ng", PASSWORD + "x" * 1024)
    assert issuer.sign_in("dr-ng", PASSWORD).access_token


def test_failed_attempts_lock_the_account_for_a_while(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    for _ in range(3):
        with pytest.raises(SignInError, match="invalid_credentials"):
            issuer.sign_in("dr-ng", "guess")
    # locked: even the right password is refused, and wrong ones do not reach the hash
    with pytest.raises(SignInError) as locked:
        issuer.sign_in("dr-ng", PASSWORD)
    assert locked.value.reason == "rate_limited"
    clock.now += 299
    with pytest.raises(SignInError, match="rate_limited"):
        issuer.sign_in("dr-ng", PASSWORD)
    clock.now += 2
    assert issuer.sign_in("dr-ng", PASSWORD).access_token
    assert issuer.refusals.snapshot() == {
        "sign_in_invalid_credentials": 3,
        "sign_in_rate_limited": 2,
    }


def test_failures_spread_out_do_not_lock(issuer: Issuer, clock: Clock) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    for _ in range(5):
        with pytest.raises(SignInError, match="invalid_credentials"):
            issuer.sign_in("dr-ng", "guess")
        with pytest.raises(SignInError, match="invalid_credentials"):
            issuer.sign_in("dr-ng", "guess again")
        clock.now += 61
    assert issuer.sign_in("dr-ng", PASSWORD).access_token


def test_a_success_resets_the_count(issuer: Issuer) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    for _ in range(3):
        for _ in range(2):
            with pytest.raises(SignInError, match="invalid_credentials"):
                issuer.sign_in("dr-ng", "guess")
        issuer.sign_in("dr-ng", PASSWORD)


def test_disabled_user_is_refused(issuer: Issuer) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    assert issuer.users.set_disabled("dr-ng").disabled
    with pytest.raises(SignInError) as refused:
        issuer.sign_in("dr-ng", PASSWORD)
    assert refused.value.reason == "disabled"
    with pytest.raises(SignInError, match="invalid_credentials"):  # says nothing to a guesser
        issuer.sign_in("dr-ng", "guess")
    with pytest.raises(ValueError, match="disabled"):
        issuer.token_for(issuer.users.list()[0])
    issuer.users.set_disabled("dr-ng", False)
    assert issuer.sign_in("dr-ng", PASSWORD).access_token


def test_a_token_issued_before_the_user_was_disabled_is_refused_now(
    issuer: Issuer, clock: Clock
) -> None:
    """Disabled means now: the token check asks the issuer's directory, not the token's exp."""
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    token = issuer.sign_in("dr-ng", PASSWORD).access_token
    check = verifier(issuer, clock)
    assert check.verify(token).subject == "dr-ng"
    issuer.users.set_disabled("dr-ng")
    with pytest.raises(UserDisabled) as refused:
        check.verify(token)
    assert (refused.value.reason, refused.value.status) == ("user_disabled", 401)
    assert (refused.value.subject, refused.value.roles) == ("dr-ng", frozenset({"clinician"}))
    assert check.refusals["user_disabled"] == 1
    issuer.users.set_disabled("dr-ng", False)
    assert check.verify(token).subject == "dr-ng"
    # a name the directory does not have is not disabled (an account of another issuer)
    assert not issuer.users.is_disabled("nobody")


def test_passwords_are_stored_as_argon2id_only(issuer: Issuer, tmp_path: Path) -> None:
    issuer.users.add("dr-ng", "clinician", PASSWORD)
    raw = (tmp_path / "access.db").read_bytes() + (tmp_path / "access.db-wal").read_bytes()
    assert PASSWORD.encode() not in raw
    assert b"$argon2id$" in raw


def test_stronger_hash_parameters_apply_at_the_next_sign_in(tmp_path: Path, clock: Clock) -> None:
    config = IssuerConfig(ISS, AUD, TOKEN_URL)
    weak = Issuer.open(
        tmp_path, config, hasher=PasswordHasher.from_parameters(CHEAPEST), clock=clock
    )
    weak.users.add("dr-ng", "clinician", PASSWORD)
    weak.close()
    stronger = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    strong = Issuer.open(tmp_path, config, hasher=stronger, clock=clock)
    strong.sign_in("dr-ng", PASSWORD)
    (digest,) = strong.users._db.query("SELECT password_hash FROM users")[0]
    assert not stronger.check_needs_rehash(digest)
    strong.close()


@pytest.mark.parametrize(
    ("name", "role", "password", "patient_id", "why"),
    [
        ("Dr Ng", "clinician", PASSWORD, None, "user name"),
        ("dr-ng", "surgeon", PASSWORD, None, "role"),
        ("dr-ng", "clinician", "short", None, "12 to 1024"),
        ("dr-ng", "clinician", "x" * 1025, None, "12 to 1024"),
        ("pat", "patient", PASSWORD, None, "patient id"),
        ("dr-ng", "clinician", PASSWORD, "p-1", "patient id"),
    ],
)
def test_bad_accounts_are_refused(
    issuer: Issuer, name: str, role: Any, password: str, patient_id: str | None, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        issuer.users.add(name, role, password, patient_id=patient_id)


def test_user_list_and_duplicates(issuer: Issuer) -> None:
    issuer.users.add("b", "admin", PASSWORD)
    issuer.users.add("a", "patient", PASSWORD, patient_id="p-1")
    assert [u.name for u in issuer.users.list()] == ["a", "b"]
    with pytest.raises(ValueError, match="exists"):
        issuer.users.add("a", "admin", PASSWORD)


# --- apps (SMART Backend Services) --------------------------------------------------------

ES384_KEY = ECKey.generate_key("P-384", parameters={"kid": "es"}, private=True)
RS384_KEY = RSAKey.generate_key(2048, parameters={"kid": "rs"}, private=True)
STRANGER = ECKey.generate_key("P-384", parameters={"kid": "es"}, private=True)


@pytest.fixture
def app(issuer: Issuer) -> str:
    jwks = {"keys": [ES384_KEY.as_dict(private=False), RS384_KEY.as_dict(private=False)]}
    issuer.apps.register("tele-1", "Tele clinic", jwks, "system/Observation.rs system/Patient.rs")
    return "tele-1"


def assertion(clock: Clock, key: Key = ES384_KEY, alg: str = "ES384", **changes: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "tele-1",
        "sub": "tele-1",
        "aud": TOKEN_URL,
        "exp": int(clock.now) + 240,
        "iat": int(clock.now),
        "jti": f"a-{clock.now}-{alg}",
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT", **changes.pop("header", {})}
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=[alg])


def form(token: str, scope: str = "system/Observation.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
    }


@pytest.mark.parametrize(("key", "alg"), [(ES384_KEY, "ES384"), (RS384_KEY, "RS384")])
def test_app_assertion_is_accepted(
    issuer: Issuer, app: str, clock: Clock, key: Key, alg: str
) -> None:
    issued = issuer.client_credentials(form(assertion(clock, key, alg)))
    principal = verifier(issuer, clock).verify(issued.access_token)
    assert (principal.subject, principal.client_id, principal.kind) == (app, app, "app")
    assert str(principal.scopes) == "system/Observation.rs"
    assert issued.expires_in <= 300
    assert "refresh_token" not in issued.response()


def test_app_is_granted_only_what_its_registration_covers(
    issuer: Issuer, app: str, clock: Clock
) -> None:
    wide = "system/Observation.rs system/Observation.cud system/AuditEvent.rs"
    issued = issuer.client_credentials(form(assertion(clock), scope=wide))
    assert issued.scope == "system/Observation.rs"
    everything = issuer.client_credentials(form(assertion(clock, jti="other"), scope=""))
    assert everything.scope == "system/Observation.rs system/Patient.rs"
    with pytest.raises(TokenRequestError) as refused:
        issuer.client_credentials(form(assertion(clock, jti="third"), scope="system/AuditEvent.rs"))
    assert (refused.value.error, refused.value.reason) == ("invalid_scope", "scope_not_allowed")


def refused(
    issuer: Issuer, body: dict[str, str], reason: str, error: str = "invalid_client"
) -> None:
    with pytest.raises(TokenRequestError) as caught:
        issuer.client_credentials(body)
    assert (caught.value.error, caught.value.reason) == (error, reason), caught.value
    assert caught.value.body()["error"] == error


def test_replayed_jti_is_refused(issuer: Issuer, app: str, clock: Clock) -> None:
    token = assertion(clock)
    issuer.client_credentials(form(token))
    refused(issuer, form(token), "replayed_jti")
    assert issuer.refusals["token_replayed_jti"] == 1
    clock.now += 100  # still within the assertion's lifetime: still a replay
    refused(issuer, form(assertion(clock, jti=f"a-{clock.now - 100}-ES384")), "replayed_jti")


def test_replay_is_refused_by_another_process_on_the_same_data(
    issuer: Issuer, app: str, clock: Clock, tmp_path: Path
) -> None:
    token = assertion(clock)
    issuer.client_credentials(form(token))
    other = Issuer.open(
        tmp_path, issuer.config, hasher=PasswordHasher.from_parameters(CHEAPEST), clock=clock
    )
    try:
        refused(other, form(token), "replayed_jti")
    finally:
        other.close()


def test_a_refused_assertion_does_not_spend_its_jti(issuer: Issuer, app: str, clock: Clock) -> None:
    token = assertion(clock)
    refused(issuer, form(token, scope="system/AuditEvent.rs"), "scope_not_allowed", "invalid_scope")
    assert issuer.client_credentials(form(token)).access_token


def test_wrong_aud_is_refused(issuer: Issuer, app: str, clock: Clock) -> None:
    refused(issuer, form(assertion(clock, aud=AUD)), "wrong_audience")
    refused(issuer, form(assertion(clock, aud=None)), "wrong_audience")


def test_expired_assertion_is_refused(issuer: Issuer, app: str, clock: Clock) -> None:
    token = assertion(clock)
    clock.now += 240 + 30
    refused(issuer, form(token), "expired")


def test_assertion_living_over_five_minutes_is_refused(
    issuer: Issuer, app: str, clock: Clock
) -> None:
    refused(issuer, form(assertion(clock, exp=int(clock.now) + 400)), "lifetime_too_long")
    refused(issuer, form(assertion(clock, exp=None)), "missing_claim")


def test_unregistered_key_is_refused(issuer: Issuer, app: str, clock: Clock) -> None:
    # same kid as a registered key, another key: the signature fails
    refused(issuer, form(assertion(clock, key=STRANGER)), "bad_signature")
    unknown = ECKey.generate_key("P-384", parameters={"kid": "new"}, private=True)
    refused(issuer, form(assertion(clock, key=unknown)), "unknown_key")
    # a key offered in the header itself is never trusted
    header = {"jwk": unknown.as_dict(private=False)}
    refused(issuer, form(assertion(clock, key=unknown, header=header)), "key_not_registered")
    refused(
        issuer,
        form(assertion(clock, header={"jku": "https://evil.test/jwks"})),
        "key_not_registered",
    )


def test_other_algorithms_are_refused(issuer: Issuer, app: str, clock: Clock) -> None:
    es256 = ECKey.generate_key("P-256", parameters={"kid": "es"}, private=True)
    refused(issuer, form(assertion(clock, key=es256, alg="ES256")), "alg_not_allowed")
    # RS384 named with the EC key's kid
    refused(
        issuer,
        form(assertion(clock, key=RS384_KEY, alg="RS384", header={"kid": "es"})),
        "alg_not_allowed",
    )


def test_unknown_and_disabled_apps_and_wrong_client(issuer: Issuer, app: str, clock: Clock) -> None:
    refused(issuer, form(assertion(clock, iss="tele-2", sub="tele-2")), "unknown_client")
    refused(issuer, form(assertion(clock, sub="someone")), "wrong_client")
    refused(issuer, {**form(assertion(clock)), "client_id": "tele-2"}, "wrong_client")
    issuer.apps.set_disabled(app)
    refused(issuer, form(assertion(clock)), "disabled_client")


def test_request_shape(issuer: Issuer, app: str, clock: Clock) -> None:
    good = form(assertion(clock))
    refused(issuer, {**good, "grant_type": "password"}, "grant_type", "unsupported_grant_type")
    refused(issuer, {**good, "client_assertion_type": "basic"}, "assertion_type")
    refused(issuer, {k: v for k, v in good.items() if k != "client_assertion"}, "no_assertion")
    refused(issuer, {**good, "client_assertion": "not.a.jwt"}, "malformed")
    refused(issuer, {**good, "scope": "system/Observation.sr"}, "bad_scope", "invalid_scope")


@pytest.mark.parametrize(
    ("jwks", "scopes", "why"),
    [
        ({"keys": []}, "system/Observation.rs", "no public signing key"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "system/Observation.rs", "no public"),
        ({"keys": [ES384_KEY.as_dict(private=False)]}, "patient/Observation.rs", "system/"),
        ({"keys": [ES384_KEY.as_dict(private=False)]}, "openid", "resource scopes only"),
        ({"keys": [ES384_KEY.as_dict(private=True)]}, "system/Observation.rs", "no public"),
    ],
)
def test_bad_registrations_are_refused(
    issuer: Issuer, jwks: dict[str, Any], scopes: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        issuer.apps.register("tele-9", "Bad", jwks, scopes)
    assert issuer.apps.get("tele-9") is None


def test_app_list(issuer: Issuer, app: str) -> None:
    (listed,) = issuer.apps.list()
    assert (listed.client_id, listed.name, listed.disabled) == (app, "Tele clinic", False)
    assert str(listed.scopes) == "system/Observation.rs system/Patient.rs"


# --- hostile token requests: nothing but TokenRequestError ---------------------------------

# JSON two levels deep, drawn without st.recursive (whose "extend doesn't use its argument"
# check misfires now and then, and pytest turns its warning into an error)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = (
    scalars
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.text(max_size=8), scalars | st.lists(scalars, max_size=3), max_size=4)
)
claim_names = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(
            ["grant_type", "scope", "client_assertion_type", "client_assertion", "client_id"]
        ),
        st.text(max_size=200),
    )
)
def test_hostile_forms_raise_only_token_request_error(
    issuer: Issuer, app: str, body: dict[str, str]
) -> None:
    with pytest.raises(TokenRequestError):
        issuer.client_credentials(body)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_hostile_assertions_raise_only_token_request_error_or_pass(
    issuer: Issuer, app: str, clock: Clock, data: st.DataObject
) -> None:
    """Signed by the app's registered key: the assertion's claims are the attack."""
    good = json.loads(base64.urlsafe_b64decode(assertion(clock).split(".")[1] + "=="))
    claims = {
        name: data.draw(json_values | st.just(good.get(name, int(clock.now))), label=name)
        for name in claim_names
        if data.draw(st.booleans(), label=f"has {name}")
    }
    extra = st.dictionaries(st.sampled_from(["typ", "kid"]), st.text(max_size=12), max_size=2)
    header = {"alg": "ES384", "kid": "es", **data.draw(extra)}
    token = jws.serialize_compact(header, json.dumps(claims), ES384_KEY, algorithms=["ES384"])
    try:
        issued = issuer.client_credentials(form(token))
    except TokenRequestError:
        return
    aud = claims["aud"]
    assert aud == TOKEN_URL or (isinstance(aud, list) and TOKEN_URL in aud)
    assert claims["iss"] == claims["sub"] == app
    assert verifier(issuer, clock).verify(issued.access_token).client_id == app


def _unsigned_shape(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.{part({'sig': 1})}"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: _unsigned_shape({"alg": ["ES384"], "kid": "es"}, {}), "alg_not_allowed"),
        (lambda c: assertion(c, iss="tele-1\udc80", sub="tele-1\udc80"), "malformed"),
        (lambda c: assertion(c, jti="a\udc80"), "malformed"),
    ],
    ids=["alg-is-a-list", "iss-lone-surrogate", "jti-lone-surrogate"],
)
def test_hostile_assertion_fields_found_by_the_fuzzer_are_refusals(
    issuer: Issuer, app: str, clock: Clock, make: Callable[[Clock], str], reason: str
) -> None:
    """`vitaltrail bench fuzz` found these escaping as TypeError and UnicodeEncodeError."""
    with pytest.raises(TokenRequestError) as refused:
        issuer.client_credentials(form(make(clock)))
    assert refused.value.reason == reason
