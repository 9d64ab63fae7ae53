"""The bearer-token check: every refusal has its reason code, and hostile input never raises
anything but ``TokenError``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey, Key, RSAKey

from access.errors import ProviderError, TokenError
from access.jwks import JwkSetCache, StaticKeys, discover
from access.tokens import Principal, TokenVerifier, TrustedIssuer
from access.users import UserStore

ISS = "https://vitaltrail.test"
AUD = "https://vitaltrail.test/api"
NOW = 1_800_000_000


def ec_key(kid: str, curve: str = "P-256") -> ECKey:
    return ECKey.generate_key(curve, parameters={"kid": kid, "use": "sig"}, private=True)


KEY = ec_key("k1")
RSA = RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True)
OTHER = ec_key("k1")  # same kid, another key: a forger's


def jwk_set(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "alice",
        "aud": AUD,
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "t-1",
        "client_id": "vitaltrail:web",
        "scope": "user/Observation.rs openid",
        "roles": ["clinician"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(body: Mapping[str, Any], key: Key = KEY, alg: str = "ES256", **header: Any) -> str:
    protected = {"alg": alg, "typ": "at+jwt", "kid": key.kid, **header}
    protected = {k: v for k, v in protected.items() if v is not None}
    return jws.serialize_compact(protected, json.dumps(body), key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Mapping[str, Any], body: Mapping[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(body).encode()), b64(signature)]
    )


def verifier(*issuers: TrustedIssuer) -> TokenVerifier:
    trusted = issuers or (TrustedIssuer(ISS, StaticKeys(jwk_set(KEY, RSA))),)
    return TokenVerifier(AUD, trusted, clock=lambda: NOW)


def refused(token: str | bytes, reason: str, check: TokenVerifier | None = None) -> TokenError:
    with pytest.raises(TokenError) as caught:
        (check or verifier()).verify(token)
    assert caught.value.reason == reason, caught.value
    return caught.value


def test_a_good_token_gives_its_principal() -> None:
    principal = verifier().verify(sign(claims()))
    assert isinstance(principal, Principal)
    assert (principal.subject, principal.client_id, principal.kind) == (
        "alice",
        "vitaltrail:web",
        "user",
    )
    assert principal.roles == {"clinician"}
    assert principal.token_id == "t-1"
    assert principal.issuer == ISS
    assert principal.expires_at == NOW + 300
    assert principal.scopes.permits("user", "Observation", "s")
    assert principal.scopes.other == {"openid"}
    assert principal.patient is None


def test_an_app_token_and_a_patient_context() -> None:
    body = claims(sub="tele-app", client_id="tele-app", roles=None, scope="system/Observation.rs")
    app = verifier().verify(sign(body))
    assert app.kind == "app"
    assert app.roles == frozenset()
    patient = verifier().verify(sign(claims(patient="p-42", scope="patient/*.rs")))
    assert patient.patient == "p-42"
    assert patient.scopes.permits("patient", "Observation", "r")


def test_rs384_token_with_an_rsa_key() -> None:
    assert verifier().verify(sign(claims(), key=RSA, alg="RS384")).subject == "alice"


def test_audience_may_be_a_list() -> None:
    assert verifier().verify(sign(claims(aud=["https://elsewhere", AUD]))).subject == "alice"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (claims(exp=NOW - 31), "expired"),
        (claims(exp=NOW - 30), "expired"),
        (claims(nbf=NOW + 31), "not_yet_valid"),
        (claims(iat=NOW + 31), "not_yet_valid"),
        (claims(aud="https://elsewhere"), "wrong_audience"),
        (claims(aud=["https://a", "https://b"]), "wrong_audience"),
        (claims(iss="https://evil.test"), "wrong_issuer"),
        (claims(iss=["https://vitaltrail.test"]), "wrong_issuer"),
        (claims(exp="soon"), "malformed"),
        (claims(exp=True), "malformed"),
        (claims(exp=10**400), "malformed"),
        (claims(sub=""), "malformed"),
        (claims(scope=["user/Observation.rs"]), "malformed"),
        (claims(scope="user/Observation.sr"), "bad_scope"),
        (claims(patient=42), "malformed"),
    ],
)
def test_claims_are_checked(body: dict[str, Any], reason: str) -> None:
    refused(sign(body), reason)


def test_small_leeway_accepts_a_little_clock_skew() -> None:
    assert (
        verifier().verify(sign(claims(exp=NOW - 29, nbf=NOW + 29, iat=NOW + 29))).subject == "alice"
    )


@pytest.mark.parametrize("missing", ["sub", "client_id", "scope", "jti", "iat", "exp", "aud"])
def test_required_claims(missing: str) -> None:
    refused(sign(claims(**{missing: None})), "missing_claim")


def test_alg_none_is_refused() -> None:
    token = raw_token({"alg": "none", "typ": "at+jwt"}, claims())
    refused(token, "alg_not_allowed")
    refused(token + "AAAA", "alg_not_allowed")


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    """The classic alg confusion: HS256 keyed with the bytes of the issuer's public key."""
    signing_input = raw_token({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, claims())[:-1]
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    refused(f"{signing_input}.{b64(mac)}", "alg_not_allowed")


def test_alg_must_fit_the_key() -> None:
    # ES384 needs a P-384 key; the kid names a P-256 key
    p384 = ec_key("k1", "P-384")
    refused(sign(claims(), key=p384, alg="ES384"), "alg_not_allowed")
    # an RSA alg naming the EC key
    refused(sign(claims(), key=RSA, alg="RS256", kid="k1"), "alg_not_allowed")
    # a JWK that names its alg is used with that alg only
    pinned = RSAKey.generate_key(2048, parameters={"kid": "r2", "alg": "RS384"}, private=True)
    check = verifier(TrustedIssuer(ISS, StaticKeys(jwk_set(pinned))))
    unpinned = {k: v for k, v in pinned.as_dict(private=True).items() if k != "alg"}
    refused(sign(claims(), key=RSAKey.import_key(unpinned), alg="RS256"), "alg_not_allowed", check)
    assert check.verify(sign(claims(), key=pinned, alg="RS384")).subject == "alice"


def test_an_issuer_may_be_limited_to_some_algorithms() -> None:
    check = verifier(
        TrustedIssuer(ISS, StaticKeys(jwk_set(KEY, RSA)), algorithms=frozenset({"ES256"}))
    )
    refused(sign(claims(), key=RSA, alg="RS384"), "alg_not_allowed", check)


def test_tampered_payload_and_forged_signature() -> None:
    header, _, signature = sign(claims()).split(".")
    forged_body = b64(json.dumps(claims(sub="mallory")).encode())
    refused(f"{header}.{forged_body}.{signature}", "bad_signature")
    refused(sign(claims(), key=OTHER), "bad_signature")


@pytest.mark.parametrize(
    ("typ", "strict_ok", "external_ok"),
    [
        ("at+jwt", True, True),
        ("application/at+jwt", True, True),
        ("JWT", False, True),
        (None, False, True),
        ("dpop+jwt", False, False),
        ("logout+jwt", False, False),
    ],
)
def test_typ(typ: str | None, strict_ok: bool, external_ok: bool) -> None:
    token = sign(claims(), typ=typ)
    keys = StaticKeys(jwk_set(KEY))
    for require, ok in ((True, strict_ok), (False, external_ok)):
        check = verifier(TrustedIssuer(ISS, keys, require_at_jwt=require))
        if ok:
            assert check.verify(token).subject == "alice"
        else:
            refused(token, "wrong_type", check)


def test_external_issuer_may_name_the_client_in_azp() -> None:
    body = claims(client_id=None, azp="ward-app")
    keys = StaticKeys(jwk_set(KEY))
    assert (
        verifier(TrustedIssuer(ISS, keys, require_at_jwt=False)).verify(sign(body)).client_id
        == "ward-app"
    )
    refused(sign(body), "missing_claim", verifier(TrustedIssuer(ISS, keys)))


def test_keycloak_style_roles_claim() -> None:
    body = claims(roles=None, realm_access={"roles": ["clinician", 7]})
    trust = TrustedIssuer(ISS, StaticKeys(jwk_set(KEY)), roles_claim=("realm_access", "roles"))
    assert verifier(trust).verify(sign(body)).roles == {"clinician"}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed"),
        ("abc", "malformed"),
        ("a.b", "malformed"),
        ("a.b.c.d.e", "malformed"),  # a JWE: encrypted tokens are not accepted
        ("!!.b.c", "malformed"),
        (b"\xff\xfe.a.b", "malformed"),
        ("x" * 9000, "too_large"),
        (raw_token({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims()), "alg_not_allowed"),
        (sign(claims()) + "AA", "bad_signature"),  # a signature a byte too long
        (sign(claims()) + "AAA", "malformed"),  # not a whole number of bytes
        # the last of 86 characters carries 2 bits: "B" sets an unused one (non-canonical)
        (sign(claims())[:-1] + "B", "malformed"),
    ],
)
def test_shapeless_tokens(token: str | bytes, reason: str) -> None:
    refused(token, reason)


def test_json_constants_and_non_objects_are_refused() -> None:
    header = b64(b'{"alg": "ES256", "typ": "at+jwt", "kid": "k1"}')
    nan = b64(b'{"exp": NaN}')
    refused(f"{header}.{nan}.AAAA", "malformed")
    refused(f"{header}.{b64(b'[1, 2]')}.AAAA", "malformed")
    refused(raw_token({"alg": "ES256", "crit": ["exp"]}, claims(), b"x"), "malformed")


def test_authorization_header() -> None:
    check = verifier()
    assert check.verify_authorization(f"Bearer {sign(claims())}").subject == "alice"
    assert check.verify_authorization(f"bearer  {sign(claims())} ").subject == "alice"
    with pytest.raises(TokenError) as missing:
        check.verify_authorization(None)
    assert missing.value.reason == "missing"
    assert missing.value.www_authenticate == "Bearer"
    with pytest.raises(TokenError) as basic:
        check.verify_authorization("Basic dXNlcjpwdw==")
    assert basic.value.reason == "malformed"


def test_refusals_are_counted_by_reason() -> None:
    check = verifier()
    for token in (sign(claims(exp=NOW - 100)), sign(claims(exp=NOW - 200)), "junk"):
        with pytest.raises(TokenError):
            check.verify(token)
    with pytest.raises(TokenError):
        check.verify_authorization(None)
    check.verify(sign(claims()))
    assert check.refusals.snapshot() == {"expired": 2, "malformed": 1, "missing": 1}


def test_www_authenticate_carries_the_rfc6750_error() -> None:
    error = refused(sign(claims(exp=NOW - 100)), "expired")
    assert error.status == 401
    assert (
        error.www_authenticate
        == 'Bearer error="invalid_token", error_description="the token has expired"'
    )
    assert TokenError("insufficient_scope", 'needs "x"').status == 403
    hostile = TokenError("insufficient_scope", 'needs "x"\\\r\n\u00e9')
    assert (
        hostile.www_authenticate == 'Bearer error="insufficient_scope", error_description="needs x"'
    )


class FakeProvider:
    """A JWK set that changes and can fail, with a clock the test moves."""

    def __init__(self, *keys: Key) -> None:
        self.doc = jwk_set(*keys)
        self.down = False
        self.urls: list[str] = []
        self.now = 0.0

    def fetch(self, url: str) -> Mapping[str, Any]:
        self.urls.append(url)
        if self.down:
            raise ProviderError("connection refused")
        return self.doc


def cached(provider: FakeProvider, **options: Any) -> tuple[TokenVerifier, JwkSetCache]:
    cache = JwkSetCache("https://idp/jwks", provider.fetch, clock=lambda: provider.now, **options)
    return verifier(TrustedIssuer(ISS, cache)), cache


def test_jwks_is_cached_and_refreshed_on_a_new_kid_once() -> None:
    provider = FakeProvider(KEY)
    check, cache = cached(provider)
    for _ in range(3):
        check.verify(sign(claims()))
    assert cache.fetches == 1
    rotated = ec_key("k2")
    provider.doc = jwk_set(KEY, rotated)
    provider.now = 31
    assert check.verify(sign(claims(), key=rotated)).subject == "alice"
    assert cache.fetches == 2
    # made-up kids: at most one fetch per min_refresh_s, however many tokens
    for i in range(20):
        refused(sign(claims(), key=ec_key(f"bogus-{i}")), "unknown_key", check)
    assert cache.fetches == 2
    provider.now = 62
    refused(sign(claims(), key=ec_key("bogus")), "unknown_key", check)
    assert cache.fetches == 3


def test_jwks_unreachable_fails_closed_once_stale() -> None:
    provider = FakeProvider(KEY)
    provider.down = True
    check, _ = cached(provider, max_age_s=100)
    refused(sign(claims()), "keys_unavailable", check)
    provider.down = False
    provider.now = 31
    check.verify(sign(claims()))
    provider.down = True
    provider.now = 90  # held keys still serve
    check.verify(sign(claims()))
    provider.now = 200  # stale, and the issuer cannot be reached: refuse
    refused(sign(claims()), "keys_unavailable", check)


def test_jwks_is_bounded_and_skips_keys_it_cannot_use() -> None:
    provider = FakeProvider(KEY)
    provider.doc = {"keys": [*jwk_set(KEY)["keys"], {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, 5]}
    check, _ = cached(provider)
    check.verify(sign(claims()))
    refused(
        raw_token({"alg": "ES256", "kid": "h", "typ": "at+jwt"}, claims(), b"x" * 64),
        "unknown_key",
        check,
    )
    provider.doc = jwk_set(*(ec_key(f"k{i}") for i in range(65)))
    refused(sign(claims()), "keys_unavailable", cached(provider)[0])


def test_discovery_checks_the_issuer() -> None:
    doc = {"issuer": ISS, "jwks_uri": f"{ISS}/jwks", "token_endpoint": f"{ISS}/token"}
    asked: list[str] = []

    def fetch(url: str) -> Mapping[str, Any]:
        asked.append(url)
        return doc

    meta = discover(ISS, fetch)
    assert asked == [f"{ISS}/.well-known/openid-configuration"]
    assert (meta.issuer, meta.jwks_uri, meta.token_endpoint) == (ISS, f"{ISS}/jwks", f"{ISS}/token")
    with pytest.raises(ProviderError):
        discover("https://other.test", fetch)
    doc["jwks_uri"] = "file:///etc/passwd"
    with pytest.raises(ProviderError):
        discover(ISS, fetch)


# --- hostile input: nothing but TokenError, ever ---------------------------------------------

# JSON two levels deep, drawn without st.recursive (whose "extend doesn't use its argument"
# check misfires now and then, and pytest turns its warning into an error)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = (
    scalars
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.text(max_size=8), scalars | st.lists(scalars, max_size=3), max_size=4)
)
hostile_claims = st.fixed_dictionaries(
    {},
    optional={
        name: json_values | st.just(claims(nbf=NOW, patient="p-1")[name])
        for name in (
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "scope",
            "roles",
            "patient",
        )
    },
)


@pytest.mark.parametrize(
    "body",
    [
        claims(sub="alice\udced\udca0"),  # seed 11 of `vitaltrail bench fuzz`: a lone surrogate
        claims(scope="user/Observation.rs \ud800"),
        claims(roles=["clinician", "\udfff"]),
        {**claims(), "\udc80": 1},  # in a member's name too
    ],
    ids=["sub", "scope", "roles", "member-name"],
)
def test_a_lone_surrogate_anywhere_in_the_claims_is_malformed(
    body: dict[str, Any], tmp_path: Path
) -> None:
    """`vitaltrail bench fuzz --inputs 100000 --seed 11` found a well-signed token whose ``sub``
    held ``\\udced\\udca0``: it passed every check and escaped as UnicodeEncodeError from the
    user directory's SQLite lookup. Such JSON is refused where it is decoded, whatever claim
    (or name) holds it, before any check reaches a database."""
    users = UserStore(tmp_path / "access.db")
    trusted = TrustedIssuer(ISS, StaticKeys(jwk_set(KEY)), user_disabled=users.is_disabled)
    try:
        error = refused(sign(body), "malformed", verifier(trusted))
        assert "Unicode" in error.description
    finally:
        users.close()
    header = b64(b'{"alg": "ES256", "typ": "at+jwt", "kid": "k1\\ud800"}')
    refused(f"{header}.{b64(json.dumps(claims()).encode())}.AAAA", "malformed")
    # a surrogate pair is one character, and fine
    assert verifier().verify(sign(claims(sub="alice\U0001f600"))).subject == "alice\U0001f600"


hostile_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "RS384", "none", "HS256", "EdDSA"]) | json_values},
    optional={
        "typ": st.sampled_from(["at+jwt", "JWT"]) | json_values,
        "kid": st.just("k1") | json_values,
        "crit": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.text(max_size=600))
def test_hostile_bytes_raise_only_token_error(token: bytes | str) -> None:
    with pytest.raises(TokenError):
        verifier().verify(token)


@settings(max_examples=150, deadline=None)
@given(hostile_headers, hostile_claims, st.binary(max_size=80))
def test_hostile_json_raises_only_token_error(
    header: dict[str, Any], body: dict[str, Any], sig: bytes
) -> None:
    with pytest.raises(TokenError):
        verifier().verify(raw_token(header, body, sig))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_well_signed_hostile_claims_raise_only_token_error_or_verify(data: st.DataObject) -> None:
    """Signed by the trusted key: the claims themselves are the attack."""
    body = data.draw(hostile_claims)
    try:
        principal = verifier().verify(sign(body))
    except TokenError:
        return
    audience = body["aud"]
    assert principal.issuer == ISS
    assert audience == AUD or (isinstance(audience, list) and AUD in audience)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_flipped_byte_is_refused(position: int, xor: int) -> None:
    token = bytearray(sign(claims()).encode())
    token[position % len(token)] ^= xor or 1
    with pytest.raises(TokenError):
        verifier().verify(bytes(token))
