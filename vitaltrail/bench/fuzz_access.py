"""The read side's decoders of outside bytes, for `vitaltrail bench fuzz`: consent statements
(bare, patient-signed, staff-recorded), access events, patient key statements, bearer tokens
(access.tokens) and SMART Backend Services client assertions (access.issuer).

Seeds are real: statements signed with the corpus's device key standing in as the patient's
key (so a re-signed hostile statement reaches the statement decoder behind the signature),
tokens from a real embedded issuer, assertions signed ES384 and RS384 by a registered app's
keys. JWT targets carry a ``resign`` that signs edited header and claims with the right key,
so the claim checks behind the signature check get hostile claims too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from access.apps import AppStore
from access.consent import ConsentStatement, Grantee, RecordedConsent, SignedConsent, sign_consent
from access.errors import (
    AccessEventError,
    ConsentError,
    PatientKeyError,
    TokenError,
    TokenRequestError,
)
from access.issuer import ASSERTION_TYPE, Issuer, IssuerConfig
from access.patient_keys import PatientKeyStatement
from access.tokens import TokenVerifier
from access.trail import DENY, PERMIT, READ, SEARCH, Access, AccessEvent, Agent
from access.users import User, UserStore
from ledger.entries import EntryKind
from vitaltrail.bench.fuzz_corpus import NOW_MS, Target, corpus, text

NOW_S = NOW_MS // 1000
ISSUER = "https://fuzz.example"
AUDIENCE = "https://fuzz.example/api"
TOKEN_ENDPOINT = "https://fuzz.example/oauth/token"  # noqa: S105 (a URL)
APP_ID = "telemed-fuzz"


def _clock() -> float:
    return float(NOW_S)


@dataclass(frozen=True)
class AccessCorpus:
    statements: tuple[bytes, ...]
    signed: tuple[bytes, ...]
    recorded: tuple[bytes, ...]
    events: tuple[bytes, ...]
    patient_keys: tuple[bytes, ...]
    tokens: tuple[bytes, ...]
    assertions: tuple[bytes, ...]
    issuer: Issuer
    verifier: TokenVerifier
    issuer_key: ECKey
    app_keys: Mapping[str, ECKey | RSAKey]  # by alg


def _statements() -> list[ConsentStatement]:
    app = Grantee("app", "telemed-1")
    return [
        ConsentStatement.grant(
            "p-17",
            0,
            NOW_MS - 1,
            app,
            data=["vital-signs"],
            purpose=["TREAT", "PATRQT"],
            start_ms=NOW_MS - 1,
            end_ms=NOW_MS + 86_400_000,
        ),
        ConsentStatement.grant(
            "p-17",
            1,
            NOW_MS,
            Grantee("user", "u-doc-1"),
            data=["vital-signs"],
            purpose=["TREAT"],
            start_ms=NOW_MS,
        ),
        ConsentStatement.withdrawal("p-17", 2, NOW_MS + 5, ends=0),
    ]


def _accesses() -> list[Access]:
    return [
        Access(
            NOW_MS,
            Agent("app", "telemed-1", "app", jti="j-1"),
            ("p-17",),
            ("vital-signs",),
            ("TREAT",),
            PERMIT,
            "consent",
            READ,
            "GET /api/v1/patients/{patient_id}/vitals",
            consents=(("p-17", 0),),
            request_id="req-1",
        ),
        Access(
            NOW_MS + 1,
            Agent("user", "u-nurse-3", "clinician", client="vitaltrail:web", jti="j-2"),
            ("p-17", "p-18"),
            ("vital-signs",),
            ("TREAT",),
            PERMIT,
            "break-glass",
            SEARCH,
            "GET /api/v1/patients",
            break_glass="collapsed in the corridor",
        ),
        Access(
            NOW_MS + 2,
            Agent("user", "u-p17", "patient"),
            ("p-18",),
            ("vital-signs",),
            ("PATRQT",),
            DENY,
            "not-own-data",
            READ,
            "GET /api/v1/patients/{patient_id}/readings",
        ),
    ]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_signer(key: ECKey | RSAKey, alg: str) -> Callable[[Mapping[str, Any], bytes], bytes]:
    """Sign an (edited) header and claims payload as a compact JWS with ``key``."""

    def sign(header: Mapping[str, Any], payload: bytes) -> bytes:
        protected = {**header, "alg": alg}
        try:
            return jws.serialize_compact(protected, payload, key, algorithms=[alg]).encode()
        except Exception:  # a header joserfc will not write: sign by hand
            signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(payload)}"
            bare = jws.serialize_compact({"alg": alg}, payload, key, algorithms=[alg])
            return f"{signing_input}.{bare.rsplit('.', 1)[1]}".encode()

    return sign


@cache
def access_corpus() -> AccessCorpus:
    signer = corpus().signer  # stands in for the patient's key
    statements = _statements()
    signed = [sign_consent(signer, s) for s in statements]
    recorded = [
        RecordedConsent(s, "u-doc-1", "clinician", "the patient asked at the bedside")
        for s in statements
    ]
    events = [AccessEvent("3f9c0a1b2c3d4e5f", i + 1, a) for i, a in enumerate(_accesses())]
    keys = [
        PatientKeyStatement(EntryKind.PATIENT_KEY_REGISTERED, "p-17", signer.key),
        PatientKeyStatement(EntryKind.PATIENT_KEY_REVOKED, "p-18", signer.key),
    ]
    issuer_key = ECKey.generate_key("P-256", parameters={"alg": "ES256"}, private=True)
    issuer_key = ECKey.import_key({**issuer_key.as_dict(private=True), "kid": "fuzz-issuer"})
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users = UserStore(Path(":memory:"), hasher=fast, clock=_clock)
    apps = AppStore(Path(":memory:"), clock=_clock)
    app_keys: dict[str, ECKey | RSAKey] = {
        "ES384": ECKey.generate_key("P-384", parameters={"kid": "es"}, private=True),
        "RS384": RSAKey.generate_key(2048, parameters={"kid": "rs"}, private=True),
    }
    apps.register(
        APP_ID,
        "fuzz app",
        {"keys": [k.as_dict(private=False) for k in app_keys.values()]},
        "system/Observation.rs system/Patient.rs",
    )
    config = IssuerConfig(ISSUER, AUDIENCE, TOKEN_ENDPOINT)
    issuer = Issuer(config, issuer_key, users, apps, clock=_clock)
    tokens = [
        issuer.token_for(User("dr.lee", "clinician")).access_token,
        issuer.token_for(User("pat", "patient", "p-17")).access_token,
        issuer.token_for(User("root", "admin")).access_token,
    ]
    assertions = [
        jws.serialize_compact(
            {"alg": alg, "kid": key.kid, "typ": "JWT"},
            json.dumps(
                {
                    "iss": APP_ID,
                    "sub": APP_ID,
                    "aud": TOKEN_ENDPOINT,
                    "exp": NOW_S + 240,
                    "iat": NOW_S,
                    "jti": f"seed-{alg}",
                }
            ),
            key,
            algorithms=[alg],
        )
        for alg, key in app_keys.items()
    ]
    tokens.append(_app_token(issuer, assertions[0]))
    verifier = TokenVerifier(AUDIENCE, [issuer.trusted_issuer()], clock=_clock)
    return AccessCorpus(
        statements=tuple(s.encode() for s in statements),
        signed=tuple(s.body for s in signed),
        recorded=tuple(r.body for r in recorded),
        events=tuple(e.encode() for e in events),
        patient_keys=tuple(k.body() for k in keys),
        tokens=tuple(t.encode() for t in tokens),
        assertions=tuple(a.encode() for a in assertions),
        issuer=issuer,
        verifier=verifier,
        issuer_key=issuer_key,
        app_keys=app_keys,
    )


def _form(assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": "system/Observation.rs",
    }


def _app_token(issuer: Issuer, assertion: str) -> str:
    """An app's token, from the token endpoint (its seed assertion is spent doing it)."""
    return issuer.client_credentials(_form(assertion)).access_token


def _signed_consent(data: bytes) -> object:
    consent = SignedConsent.decode(data)
    consent.verify(corpus().signer.key)
    return consent


def _client_assertion(data: bytes) -> object:
    """The token endpoint with a hostile assertion. A hostile assertion that passes every
    check spends its jti (one row for five minutes of the issuer's clock, which stands still
    here: the table grows by the accepted ones only)."""
    return access_corpus().issuer.client_credentials(_form(text(data)))


def access_targets() -> list[Target]:
    c = access_corpus()
    return [
        Target("consent statement", ConsentStatement.decode, (ConsentError,), c.statements, "cbor"),
        Target("signed consent", _signed_consent, (ConsentError,), c.signed, "cbor"),
        Target("recorded consent", RecordedConsent.decode, (ConsentError,), c.recorded, "cbor"),
        Target("access event", AccessEvent.decode, (AccessEventError,), c.events, "cbor"),
        Target(
            "patient key statement",
            lambda d: PatientKeyStatement.decode(EntryKind.PATIENT_KEY_REGISTERED, d),
            (PatientKeyError,),
            c.patient_keys,
            "cbor",
        ),
        Target(
            "bearer token",
            lambda d: c.verifier.verify(text(d)),
            (TokenError,),
            c.tokens,
            "jwt",
            resign=jwt_signer(c.issuer_key, "ES256"),
        ),
        Target(
            "client assertion",
            _client_assertion,
            (TokenRequestError,),
            c.assertions,
            "jwt",
            resign=jwt_signer(c.app_keys["ES384"], "ES384"),
        ),
    ]
