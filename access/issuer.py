"""The embedded issuer: vitaltrail's own short-lived access tokens (RFC 9068), for people who
sign in with a password and for apps using SMART Backend Services.

Its signing key is an ES256 key generated at first run into the data directory (mode 0600),
named by its RFC 7638 thumbprint; ``jwks()`` publishes the public half, and the API trusts
this issuer through that JWK set like any other. ES256 because every JOSE library and every
resource server verifies it; the ledger's own keys stay Ed25519.

A backend app authenticates with a ``private_key_jwt`` client assertion (RFC 7523; SMART
App Launch 2.2 "Backend Services"): signed ES384 or RS384 by a key of the JWK set it was
registered with, ``iss`` = ``sub`` = its client id, ``aud`` = this token endpoint, ``exp`` at
most five minutes ahead, a ``jti`` never seen before within the assertion's lifetime. It is
granted the requested ``system/`` scopes its registration covers, and no refresh token.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from joserfc import jws
from joserfc.jwk import ECKey

from access.apps import CLIENT_ID_RE, WEB_CLIENT_ID, App, AppStore
from access.errors import Refusals, ScopeError, SignInError, TokenError, TokenRequestError
from access.jwks import StaticKeys, parse_jwk_set, pick_key
from access.scopes import ScopeSet
from access.tokens import TrustedIssuer, check_signature, decode_compact
from access.users import Role, User, UserStore
from ledger.keyfile import write_private

log = logging.getLogger("vitaltrail.access")

SIGNING_ALG = "ES256"
ASSERTION_ALGORITHMS = frozenset({"ES384", "RS384"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300

# What a token delegates, by role. Scopes only delegate: the access rules (care team, own
# data, consent) still decide each request. An admin's scopes name no clinical data.
# ``user/Consent.c``: staff record a consent on a patient's behalf (dashboards.consent_routes);
# ``user/Observation.c``: clinicians document consciousness and oxygen (clinical.documented);
# ``Subscription.crds``: FHIR subscriptions of one's own (dashboards.fhir_subscription_routes).
ROLE_SCOPES: dict[Role, str] = {
    "clinician": (
        "user/Patient.rs user/Observation.rs user/Observation.c user/Provenance.rs"
        " user/Device.rs user/Consent.c user/Subscription.crds"
    ),
    "patient": (
        "patient/Patient.rs patient/Observation.rs patient/Provenance.rs patient/Device.rs"
        " patient/Consent.cruds patient/AuditEvent.rs patient/Subscription.crds"
    ),
    "admin": "user/Device.cruds user/Practitioner.cruds user/CareTeam.cruds user/Consent.c",
}


def load_or_create_signing_key(path: Path) -> ECKey:
    """The issuer's private JWK at ``path``, created (mode 0600) with its public JWK set in
    ``<path>.jwks.json`` at first run."""
    if not path.exists():
        key = ECKey.generate_key("P-256", private=True)
        kid = key.thumbprint()
        private = {**key.as_dict(private=True), "kid": kid, "alg": SIGNING_ALG, "use": "sig"}
        try:
            write_private(path, json.dumps(private).encode(), exclusive=True)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            public = {k: v for k, v in private.items() if k != "d"}
            path.with_suffix(".jwks.json").write_text(json.dumps({"keys": [public]}) + "\n")
            log.info("created the token signing key %s (kid %s)", path, kid)
    key = ECKey.import_key(json.loads(path.read_text()))
    if key.get("alg") != SIGNING_ALG or not key.kid or key.curve_name != "P-256":
        raise ValueError(f"{path} holds no {SIGNING_ALG} signing key with a kid")
    return key


@dataclass(frozen=True)
class IssuerConfig:
    issuer: str  # this issuer's URL, the tokens' iss
    audience: str  # the API's resource identifier, the tokens' aud
    token_endpoint: str  # where apps post assertions: their aud
    jwks_uri: str | None = None  # where jwks() is served; default <issuer>/.well-known/jwks.json
    token_ttl_s: int = 300
    leeway_s: int = 30

    @property
    def published_jwks_uri(self) -> str:
        return self.jwks_uri or f"{self.issuer.rstrip('/')}/.well-known/jwks.json"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    token_id: str
    patient: str | None = None

    def response(self) -> dict[str, Any]:
        """The token endpoint's JSON answer (RFC 6749 §5.1; SMART adds ``patient``)."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.patient is not None:
            body["patient"] = self.patient
        return body


class Issuer:
    """Signs access tokens for signed-in users and authenticated apps."""

    def __init__(
        self,
        config: IssuerConfig,
        key: ECKey,
        users: UserStore,
        apps: AppStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._key = key
        self.users = users
        self.apps = apps
        self._clock = clock
        self.refusals = Refusals()  # sign-ins and token requests refused, by reason

    @classmethod
    def open(
        cls,
        data_dir: Path,
        config: IssuerConfig,
        *,
        key_path: Path | None = None,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Issuer:
        """The issuer of a data directory: its key in ``keys/token-issuer.jwk`` (beside the
        ledger's, unless ``key_path`` puts it elsewhere) and its users and apps in
        ``access.db``."""
        key = load_or_create_signing_key(key_path or data_dir / "keys" / "token-issuer.jwk")
        users = UserStore(data_dir / "access.db", hasher=hasher, clock=clock)
        apps = AppStore(data_dir / "access.db", clock=clock)
        return cls(config, key, users, apps, clock=clock)

    def jwks(self) -> dict[str, Any]:
        """The public JWK set to publish at ``jwks_uri``."""
        return {"keys": [self._key.as_dict(private=False)]}

    def metadata(self) -> dict[str, Any]:
        """What ``/.well-known/smart-configuration`` (SMART App Launch 2.2) and the OAuth
        server metadata (RFC 8414) say about this issuer: a backend app finds the token
        endpoint and what it accepts there; a resource server finds the JWK set."""
        return {
            "issuer": self.config.issuer,
            "jwks_uri": self.config.published_jwks_uri,
            "token_endpoint": self.config.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
            "scopes_supported": sorted(
                {str(s) for text in ROLE_SCOPES.values() for s in ScopeSet.parse(text).scopes}
                | {"system/*.rs"}
            ),
            "code_challenge_methods_supported": ["S256"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        }

    def trusted_issuer(self) -> TrustedIssuer:
        """How the API's token check trusts this issuer."""
        return TrustedIssuer(
            self.config.issuer,
            StaticKeys(self.jwks()),
            require_at_jwt=True,
            user_disabled=self.users.is_disabled,
            app_disabled=self.apps.is_disabled,
        )

    def sign_in(self, name: str, password: str) -> IssuedToken:
        """A token for the user whose password this is (``SignInError`` otherwise)."""
        try:
            user = self.users.authenticate(name, password)
        except SignInError as exc:
            self.refusals.add(f"sign_in_{exc.reason}")
            raise
        return self.token_for(user)

    def token_for(self, user: User, scope: str | None = None) -> IssuedToken:
        """A token for a user already known to be who they are (signed in, or named by an
        operator at the command line); ``scope`` narrows the role's scopes, never widens them
        (``ValueError`` when none of it is the role's)."""
        if user.disabled:
            raise ValueError(f"user {user.name!r} is disabled")
        granted = ROLE_SCOPES[user.role]
        if scope is not None:
            narrowed = ScopeSet.parse(scope).within(ScopeSet.parse(granted))
            if not narrowed.scopes:
                raise ValueError(f"none of the scopes asked for is a {user.role}'s")
            granted = str(narrowed)
        return self._issue(
            subject=user.name,
            client_id=WEB_CLIENT_ID,
            scope=granted,
            extra={"roles": [user.role]},
            patient=user.patient_id,
        )

    def client_credentials(self, form: Mapping[str, str]) -> IssuedToken:
        """The token endpoint for backend apps: ``grant_type=client_credentials`` with a
        ``private_key_jwt`` assertion; ``TokenRequestError`` names why a request failed."""
        try:
            return self._client_credentials(form)
        except TokenRequestError as exc:
            self.refusals.add(f"token_{exc.reason}")
            raise

    def _client_credentials(self, form: Mapping[str, str]) -> IssuedToken:
        if form.get("grant_type") != "client_credentials":
            raise TokenRequestError(
                "unsupported_grant_type", "grant_type", "only client_credentials is served here"
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenRequestError(
                "invalid_client",
                "assertion_type",
                f"client_assertion_type must be {ASSERTION_TYPE}",
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise TokenRequestError("invalid_client", "no_assertion", "no client_assertion")
        app, expires_at, jti = self._verify_assertion(assertion, form.get("client_id"))
        try:
            requested = ScopeSet.parse(form.get("scope", ""))
        except ScopeError as exc:
            raise TokenRequestError("invalid_scope", "bad_scope", str(exc)[:200]) from None
        granted = requested.within(app.scopes) if requested.scopes else app.scopes
        if not granted.scopes:
            raise TokenRequestError(
                "invalid_scope", "scope_not_allowed", "none of the requested scopes is allowed"
            )
        # only now, with everything else checked, is the jti spent
        if not self.apps.first_use(app.client_id, jti, expires_at):
            log.warning("refused a replayed client assertion from %s", app.client_id)
            raise TokenRequestError("invalid_client", "replayed_jti", "this assertion was used")
        return self._issue(
            subject=app.client_id, client_id=app.client_id, scope=str(granted), extra={}
        )

    def _verify_assertion(self, assertion: str, client_id: str | None) -> tuple[App, float, str]:
        def refuse(reason: str, description: str) -> TokenRequestError:
            return TokenRequestError("invalid_client", reason, description)

        try:
            header, claims = decode_compact(assertion, 8192)
        except TokenError as exc:
            raise refuse(exc.reason, exc.description) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASSERTION_ALGORITHMS:
            raise refuse("alg_not_allowed", "a client assertion is signed ES384 or RS384")
        if "jku" in header or "x5u" in header or "jwk" in header:
            raise refuse("key_not_registered", "keys are taken from the registration only")
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or iss != sub or client_id not in (None, iss):
            raise refuse("wrong_client", "iss and sub must both be the client id")
        app = self.apps.get(iss) if CLIENT_ID_RE.fullmatch(iss) else None  # no odd text to SQL
        if app is None:
            raise refuse("unknown_client", "no app is registered with this client id")
        if app.disabled:
            raise refuse("disabled_client", "this app is disabled")
        kid = header.get("kid")
        key = pick_key(parse_jwk_set(app.jwks), kid if isinstance(kid, str) else None)
        if key is None:
            raise refuse("unknown_key", "the assertion's kid is not among the app's keys")
        try:
            check_signature(assertion, key, str(alg))
        except TokenError as exc:
            raise refuse(exc.reason, exc.description) from None
        now, leeway = self._clock(), self.config.leeway_s
        aud = claims.get("aud")
        if aud != self.config.token_endpoint and not (
            isinstance(aud, list) and self.config.token_endpoint in aud
        ):
            raise refuse("wrong_audience", "the assertion's aud must be the token endpoint")
        exp, jti = claims.get("exp"), claims.get("jti")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise refuse("missing_claim", "the assertion needs a numeric exp")
        if now >= exp + leeway:
            raise refuse("expired", "the assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME_S + leeway:
            raise refuse("lifetime_too_long", "an assertion expires within five minutes")
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if isinstance(value, int | float) and value > now + leeway:
                raise refuse("not_yet_valid", f"the assertion's {name} is in the future")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise refuse("missing_claim", "the assertion needs a jti")
        if not jti.isprintable():  # nor a lone surrogate, which no database takes
            raise refuse("malformed", "the assertion's jti is not printable Unicode text")
        return app, float(exp) + leeway, jti

    def _issue(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        extra: Mapping[str, Any],
        patient: str | None = None,
    ) -> IssuedToken:
        now = int(self._clock())
        ttl = self.config.token_ttl_s
        token_id = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": subject,
            "aud": self.config.audience,
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "jti": token_id,
            "client_id": client_id,
            "scope": scope,
            **extra,
        }
        if patient is not None:
            claims["patient"] = patient
        header = {"alg": SIGNING_ALG, "typ": "at+jwt", "kid": self._key.kid}
        token = jws.serialize_compact(
            header, json.dumps(claims, separators=(",", ":")), self._key, algorithms=[SIGNING_ALG]
        )
        log.debug("issued token %s to %s", token_id, subject)
        return IssuedToken(token, ttl, scope, token_id, patient)

    def close(self) -> None:
        self.users.close()
        self.apps.close()
