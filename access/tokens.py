"""Bearer tokens checked the RFC 9068 way, into a typed ``Principal`` or one ``TokenError``.

The order of the checks is the order of trust: size and shape first (nothing is parsed that
is not a compact JWS of two JSON objects), then the header's ``alg`` against an allow-list
(``none`` and the HMAC family never: an HMAC "public key" is a shared secret anyone with the
JWK set would hold), then the claimed ``iss`` picks the trusted issuer and its key by ``kid``
(refreshing its JWK set once, bounded, for an unknown kid), the key must be of the algorithm's
type (an RSA key never verifies an ES384 token; a JWK that names its ``alg`` is used with that
alg only), then the signature, and only then the claims: ``exp``/``nbf``/``iat`` with a small
leeway, ``aud`` containing this API, and the claims every access token must carry (``sub``,
``client_id``, ``scope``, ``jti``, ``iat``, ``exp``).

Disabled means now: an issuer that keeps a user directory (the embedded one) is trusted with
``user_disabled``, asked for every user token that passed every check, so a token of a user
disabled since it was issued is refused (:class:`~access.errors.UserDisabled`) from the next
request rather than when it expires.

``typ`` must be ``at+jwt`` (RFC 9068 §2.1), so an ID token or any other JWT an issuer signs
cannot be replayed as an access token. An external issuer that does not set it (Keycloak
writes ``typ: JWT``) is trusted with ``require_at_jwt=False``: ``JWT`` or no ``typ`` is then
accepted, and the ``aud`` check (an ID token's audience is the client, never this API) is
what keeps ID tokens out. Such an issuer may also name the client in ``azp`` instead of
``client_id``.

A token is an app's (a client acting for itself, SMART Backend Services) when its ``sub`` is
its ``client_id`` (RFC 9068 §2.2). A provider that names the client's service account in
``sub`` instead (Keycloak) is trusted with an ``app_role``: a token carrying that role is the
app's, named by its client id.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    UnsupportedKeyUseError,
)
from joserfc.jwk import Key

from access.errors import Refusals, ScopeError, TokenError, UserDisabled
from access.jwks import FetchJson, JwkSetCache, KeySource, discover
from access.scopes import ScopeSet

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope")

Kind = Literal["user", "app"]


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer whose access tokens this API accepts, and how its tokens are read."""

    issuer: str
    keys: KeySource
    require_at_jwt: bool = True
    roles_claim: tuple[str, ...] = ("roles",)  # Keycloak: ("realm_access", "roles")
    algorithms: frozenset[str] = ASYMMETRIC_ALGORITHMS
    user_disabled: Callable[[str], bool] | None = None  # the issuer's directory: sub -> disabled?
    app_disabled: Callable[[str], bool] | None = None  # its app registry: client id -> disabled?
    app_role: str | None = None  # a role marking a client's own token (Keycloak: its `sub`
    # is a service account's id, not the client id)


def trust_discovered(
    issuer: str,
    fetch: FetchJson,
    *,
    discovery_url: str | None = None,
    require_at_jwt: bool = True,
    roles_claim: tuple[str, ...] = ("roles",),
    algorithms: frozenset[str] = ASYMMETRIC_ALGORITHMS,
    app_role: str | None = None,
) -> TrustedIssuer:
    """Trust an OpenID provider named by its issuer URL: its discovery document (at
    ``discovery_url`` if given), then its JWK set from ``jwks_uri``, held in a
    ``JwkSetCache``. ``ProviderError`` if discovery fails."""
    meta = discover(issuer, fetch, discovery_url)
    keys = JwkSetCache(meta.jwks_uri, fetch)
    return TrustedIssuer(
        meta.issuer, keys, require_at_jwt, roles_claim, algorithms, app_role=app_role
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling, as a verified token says: the only input the access rules take."""

    subject: str
    client_id: str
    kind: Kind  # "app" when the token has no user (client credentials: sub is the client)
    roles: frozenset[str]
    scopes: ScopeSet
    token_id: str  # jti: the access trail names the token by it
    issuer: str
    expires_at: int
    patient: str | None = None  # SMART launch context: the one patient a patient/ scope means
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class TokenVerifier:
    """Checks bearer tokens for one audience (this API) against a set of trusted issuers."""

    def __init__(
        self,
        audience: str,
        issuers: Iterable[TrustedIssuer],
        *,
        leeway_s: int = 30,
        max_token_bytes: int = 8192,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self._issuers = {trust.issuer: trust for trust in issuers}
        self.leeway_s = leeway_s
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self.refusals = Refusals()

    def verify_authorization(self, header: str | None) -> Principal:
        """Check an ``Authorization`` header value (``Bearer <token>``, RFC 6750 §2.1)."""
        if not header:
            raise self._counted(TokenError("missing", "this resource needs a bearer token"))
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._counted(
                TokenError("malformed", "the Authorization header is not 'Bearer <token>'")
            )
        return self.verify(token.strip())

    def verify(self, token: str | bytes) -> Principal:
        """The principal a token speaks for, or ``TokenError`` naming the first check failed
        (counted in ``refusals`` by its reason)."""
        try:
            return self._verify(token)
        except TokenError as exc:
            raise self._counted(exc) from None

    def _counted(self, error: TokenError) -> TokenError:
        self.refusals.add(error.reason)
        return error

    def _verify(self, token: str | bytes) -> Principal:
        header, payload = decode_compact(token, self.max_token_bytes)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenError("alg_not_allowed", "alg is not one of the accepted algorithms")
        if "crit" in header:
            raise TokenError("malformed", "no critical header extension is understood here")
        iss = payload.get("iss")
        trust = self._issuers.get(iss) if isinstance(iss, str) else None
        if trust is None:
            raise TokenError("wrong_issuer", "the token's issuer is not trusted here")
        if alg not in trust.algorithms:
            raise TokenError("alg_not_allowed", f"alg {alg} is not accepted from this issuer")
        _check_type(header.get("typ"), trust.require_at_jwt)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed", "kid must be a string")
        key = trust.keys.key(kid)
        check_signature(token, key, alg)
        return self._principal(payload, trust)

    def _principal(self, claims: dict[str, Any], trust: TrustedIssuer) -> Principal:
        if not trust.require_at_jwt and "client_id" not in claims and "azp" in claims:
            claims = {**claims, "client_id": claims["azp"]}
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise TokenError("missing_claim", f"the token has no {name!r} claim")
        now = self._clock()
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        if now >= exp + self.leeway_s:
            raise TokenError("expired", "the token has expired")
        if iat > now + self.leeway_s:
            raise TokenError("not_yet_valid", "the token was issued in the future")
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway_s:
            raise TokenError("not_yet_valid", "the token is not valid yet")
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise TokenError("malformed", "aud must be a string or a list of strings")
        if self.audience not in audiences:
            raise TokenError("wrong_audience", "the token is not meant for this API")
        subject, client_id = _text(claims, "sub"), _text(claims, "client_id")
        token_id, scope = _text(claims, "jti"), claims["scope"]
        if not isinstance(scope, str):
            raise TokenError("malformed", "scope must be a space-separated string")
        try:
            scopes = ScopeSet.parse(scope)
        except ScopeError as exc:
            raise TokenError("bad_scope", "a resource scope breaks the SMART grammar") from exc
        patient = claims.get("patient")
        if patient is not None and not isinstance(patient, str):
            raise TokenError("malformed", "patient must be a string")
        roles = _roles(claims, trust.roles_claim)
        own = subject == client_id or (trust.app_role is not None and trust.app_role in roles)
        if not own and trust.user_disabled is not None and trust.user_disabled(subject):
            raise UserDisabled(subject, client_id, roles, token_id)
        if own and trust.app_disabled is not None and trust.app_disabled(client_id):
            raise UserDisabled(client_id, client_id, roles, token_id, kind="app")
        return Principal(
            subject=client_id if own else subject,
            client_id=client_id,
            kind="app" if own else "user",
            roles=roles,
            scopes=scopes,
            token_id=token_id,
            issuer=trust.issuer,
            expires_at=int(exp),
            patient=patient,
            claims=MappingProxyType(claims),
        )


def decode_compact(token: str | bytes, max_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload of a compact JWS, not yet verified: only shape is checked."""
    if len(token) > max_bytes:
        raise TokenError("too_large", f"a token is at most {max_bytes} bytes")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("malformed", "a token is ASCII") from None
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "a token is a compact JWS of three parts")
    header = _json_part(parts[0], "header")
    payload = _json_part(parts[1], "payload")
    if not parts[2]:
        raise TokenError("alg_not_allowed", "an unsigned token is never accepted")
    _b64decode(parts[2], "signature")
    return header, payload


def _b64decode(part: str, name: str) -> bytes:
    """Unpadded base64url in its one canonical spelling (RFC 7515 §2): a token has exactly one
    text, so its signature cannot be re-spelled (the unused low bits of the last character)."""
    try:
        if not _B64URL.match(part):
            raise ValueError(part)
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", f"the {name} is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
        raise TokenError("malformed", f"the {name} is not canonical base64url")
    return raw


def _json_part(part: str, name: str) -> dict[str, Any]:
    """A part's JSON object, every string in it Unicode text: a ``\\udc80`` escape decodes to
    a lone surrogate, which no UTF-8 encoder (SQLite's, a log's, a response's) accepts, so it
    is refused here rather than wherever a claim is next used (RFC 8259 §8.2)."""
    raw = _b64decode(part, name)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
        json.dumps(value, ensure_ascii=False).encode()  # UnicodeEncodeError: a lone surrogate
    except (ValueError, RecursionError):
        raise TokenError("malformed", f"the {name} is not base64url JSON of Unicode text") from None
    if not isinstance(value, dict):
        raise TokenError("malformed", f"the {name} is not a JSON object")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _check_type(typ: object, strict: bool) -> None:
    if typ is not None and not isinstance(typ, str):
        raise TokenError("malformed", "typ must be a string")
    media = (typ or "").lower().removeprefix("application/")
    if media == "at+jwt" or (not strict and media in ("", "jwt")):
        return
    raise TokenError("wrong_type", f"typ {str(typ)[:30]!r} is not an access token (at+jwt)")


def check_signature(token: str | bytes, key: Key, alg: str) -> None:
    """Verify with ``key`` and ``alg`` only, the key being of the algorithm's type (and of
    the alg the JWK names, if it names one)."""
    if key.key_type != _KEY_TYPE.get(alg[:2]):
        raise TokenError("alg_not_allowed", f"the issuer's key is not a key for {alg}")
    named = key.get("alg")
    if named is not None and named != alg:
        raise TokenError("alg_not_allowed", f"the issuer's key is for {named}, not {alg}")
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    try:
        jws.deserialize_compact(token, key, algorithms=[alg], registry=registry)
    except BadSignatureError:
        raise TokenError("bad_signature", "the token's signature does not verify") from None
    except (InvalidKeyCurveError, InvalidKeyTypeError, UnsupportedKeyUseError):
        raise TokenError("alg_not_allowed", f"the issuer's key is not a key for {alg}") from None
    except (JoseError, ValueError, TypeError):
        raise TokenError("malformed", "the token is not a well-formed JWS") from None


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("malformed", f"{name} must be a NumericDate")
    try:
        return float(value)
    except OverflowError:
        raise TokenError("malformed", f"{name} is out of range") from None


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise TokenError("malformed", f"{name} must be a non-empty string")
    return value


def _roles(claims: Mapping[str, Any], path: tuple[str, ...]) -> frozenset[str]:
    value: Any = claims
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    if not isinstance(value, list):
        return frozenset()
    return frozenset(r for r in value if isinstance(r, str))
