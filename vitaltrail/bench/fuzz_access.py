"""The read side's decoders of outside bytes, for `vitaltrail bench fuzz`: consent statements
(bare, patient-signed, staff-recorded), access events, patient key statements, directory
changes (access.directory_changes), bearer tokens
(access.tokens) and SMART Backend Services client assertions (access.issuer).

Seeds are real: statements signed with the corpus's device key standing in as the patient's
key (so a re-signed hostile statement reaches the statement decoder behind the signature),
tokens as the embedded issuer writes them, signed with its key, an assertion signed ES384 by a
registered app's key. JWT targets carry a ``resign`` that signs an edited header and claims
with the key the decoder trusts, so the checks behind the signature meet hostile claims too.
Keys are fixed and ECDSA nonces deterministic (RFC 6979), and each run gets an issuer that has
seen no assertion yet: ``--seed`` repeats a run input for input.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, RSAKey

from access.apps import WEB_CLIENT_ID, AppStore
from access.consent import ConsentStatement, Grantee, RecordedConsent, SignedConsent, sign_consent
from access.directory_changes import (
    MEMBER_REMOVED,
    PATIENT_ADDED,
    USER_ADDED,
    USER_DISABLED,
    Change,
    DirectoryChange,
)
from access.errors import (
    AccessEventError,
    ConsentError,
    DirectoryChangeError,
    PatientKeyError,
    TokenError,
    TokenRequestError,
)
from access.issuer import ASSERTION_TYPE, ROLE_SCOPES, Issuer, IssuerConfig
from access.patient_keys import PatientKeyStatement
from access.tokens import TokenVerifier
from access.trail import DENY, PERMIT, READ, SEARCH, Access, AccessEvent, Agent
from access.users import UserStore
from ledger.entries import EntryKind
from vitaltrail.bench.fuzz_corpus import NOW_MS, Target, corpus, text

NOW_S = NOW_MS // 1000
ISSUER = "https://fuzz.example"
AUDIENCE = "https://fuzz.example/api"
TOKEN_ENDPOINT = "https://fuzz.example/oauth/token"  # noqa: S105 (a URL)
APP_ID = "telemed-fuzz"
ISSUER_KID = "fuzz-issuer"


def _clock() -> float:
    return float(NOW_S)


@dataclass(frozen=True)
class AccessCorpus:
    statements: tuple[bytes, ...]
    signed: tuple[bytes, ...]
    recorded: tuple[bytes, ...]
    events: tuple[bytes, ...]
    patient_keys: tuple[bytes, ...]
    directory_changes: tuple[bytes, ...]
    tokens: tuple[bytes, ...]
    assertions: tuple[bytes, ...]
    issuer_jwk: ECKey
    app_jwks: Mapping[str, Any]
    sign_token: Callable[[Mapping[str, Any], bytes], bytes]
    sign_assertion: Callable[[Mapping[str, Any], bytes], bytes]


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


def directory_changes() -> list[DirectoryChange]:
    """A patient account added, a clinician disabled, a care team given a patient and losing
    a member: every shape of change (with and without a patient)."""
    changes = [
        Change(NOW_MS, "cli:ops", USER_ADDED, user="pat", role="patient", patient="p-17"),
        Change(NOW_MS + 1, "root", USER_DISABLED, user="dr.lee"),
        Change(NOW_MS + 2, "root", PATIENT_ADDED, team="ward 7", patient="p-17"),
        Change(NOW_MS + 3, "cli:ops", MEMBER_REMOVED, team="ward 7", user="dr.lee"),
    ]
    return [DirectoryChange("3f9c0a1b2c3d4e5f", i + 1, c) for i, c in enumerate(changes)]


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _ec_key(label: str, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    """A fixed key, so a seed repeats a run input for input."""
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest()) >> 1  # below every order
    return ec.derive_private_key(scalar, curve)


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str, alg: str) -> ECKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ECKey.import_key(pem, {"kid": kid, "alg": alg})


def jwt_signer(key: ec.EllipticCurvePrivateKey) -> Callable[[Mapping[str, Any], bytes], bytes]:
    """Sign a header, however hostile, and a payload as a compact JWS: ECDSA with RFC 6979
    nonces (the same input, the same token) and the hash of the key's size."""
    size = (key.curve.key_size + 7) // 8
    digest = hashes.SHA256() if size == 32 else hashes.SHA384()

    def sign(header: Mapping[str, Any], payload: bytes) -> bytes:
        head = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
        signing_input = _b64url(head) + b"." + _b64url(payload)
        der = key.sign(signing_input, ec.ECDSA(digest, deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return signing_input + b"." + _b64url(r.to_bytes(size) + s.to_bytes(size))

    return sign


def _token(sign: Callable[[Mapping[str, Any], bytes], bytes], sub: str, **claims: Any) -> bytes:
    """A token as the embedded issuer writes one (access.issuer), with a fixed jti."""
    body = {
        "iss": ISSUER,
        "sub": sub,
        "aud": AUDIENCE,
        "exp": NOW_S + 300,
        "iat": NOW_S,
        "nbf": NOW_S,
        "jti": f"fuzz-{sub}",
        **claims,
    }
    header = {"alg": "ES256", "typ": "at+jwt", "kid": ISSUER_KID}
    return sign(header, json.dumps(body, separators=(",", ":")).encode())


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
    issuer_key = _ec_key("issuer", ec.SECP256R1())
    app_key = _ec_key("app", ec.SECP384R1())
    sign_token, sign_assertion = jwt_signer(issuer_key), jwt_signer(app_key)
    web = {"client_id": WEB_CLIENT_ID}
    tokens = [
        _token(sign_token, "dr.lee", **web, scope=ROLE_SCOPES["clinician"], roles=["clinician"]),
        _token(
            sign_token,
            "pat",
            **web,
            scope=ROLE_SCOPES["patient"],
            roles=["patient"],
            patient="p-17",
        ),
        _token(sign_token, "root", **web, scope=ROLE_SCOPES["admin"], roles=["admin"]),
        _token(sign_token, APP_ID, client_id=APP_ID, scope="system/Observation.rs"),
    ]
    claims = {
        "iss": APP_ID,
        "sub": APP_ID,
        "aud": TOKEN_ENDPOINT,
        "exp": NOW_S + 240,
        "iat": NOW_S,
        "jti": "seed-ES384",
    }
    assertion = sign_assertion(
        {"alg": "ES384", "kid": "es", "typ": "JWT"}, json.dumps(claims).encode()
    )
    # A registered RS384 key (random: only its public half is used, and no seed is signed
    # with it, so an assertion naming it fails the same way in every run).
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rs", "alg": "RS384"}, private=True)
    app_jwks = {
        "keys": [_jwk(app_key, "es", "ES384").as_dict(private=False), rsa.as_dict(private=False)]
    }
    return AccessCorpus(
        statements=tuple(s.encode() for s in statements),
        signed=tuple(s.body for s in signed),
        recorded=tuple(r.body for r in recorded),
        events=tuple(e.encode() for e in events),
        patient_keys=tuple(k.body() for k in keys),
        directory_changes=tuple(d.encode() for d in directory_changes()),
        tokens=tuple(tokens),
        assertions=(assertion,),
        issuer_jwk=_jwk(issuer_key, ISSUER_KID, "ES256"),
        app_jwks=app_jwks,
        sign_token=sign_token,
        sign_assertion=sign_assertion,
    )


def fresh_issuer(c: AccessCorpus) -> Issuer:
    """An embedded issuer with the corpus's key and app, and no assertion seen yet: each run
    starts from the same state, so a seed repeats it."""
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users = UserStore(Path(":memory:"), hasher=fast, clock=_clock)
    apps = AppStore(Path(":memory:"), clock=_clock)
    apps.register(APP_ID, "fuzz app", c.app_jwks, "system/Observation.rs system/Patient.rs")
    config = IssuerConfig(ISSUER, AUDIENCE, TOKEN_ENDPOINT)
    return Issuer(config, c.issuer_jwk, users, apps, clock=_clock)


def _form(assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": "system/Observation.rs",
    }


def _signed_consent(data: bytes) -> object:
    consent = SignedConsent.decode(data)
    consent.verify(corpus().signer.key)
    return consent


def access_targets() -> list[Target]:
    c = access_corpus()
    issuer = fresh_issuer(c)
    verifier = TokenVerifier(AUDIENCE, [issuer.trusted_issuer()], clock=_clock)

    def client_assertion(data: bytes) -> object:
        """The token endpoint with a hostile assertion; one that passes every check spends its
        jti (the issuer's clock stands still: the table grows by the accepted ones only)."""
        return issuer.client_credentials(_form(text(data)))

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
            "directory change",
            DirectoryChange.decode,
            (DirectoryChangeError,),
            c.directory_changes,
            "cbor",
        ),
        Target(
            "bearer token",
            lambda d: verifier.verify(text(d)),
            (TokenError,),
            c.tokens,
            "jwt",
            resign=c.sign_token,
        ),
        Target(
            "client assertion",
            client_assertion,
            (TokenRequestError,),
            c.assertions,
            "jwt",
            resign=c.sign_assertion,
        ),
    ]
