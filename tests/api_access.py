"""Tokens and assignments for the API tests: the embedded issuer of a data directory signs them.

``Tokens(settings)`` opens the issuer the API trusts by default (its key in the data
directory, its ``iss`` and the API's ``aud`` from the settings): people get the issuer's own
tokens (``token_for``), apps go through SMART Backend Services (a registered JWK set and a
``private_key_jwt`` assertion), and :meth:`Tokens.sign` writes any claims and header at all,
for the hostile cases.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from joserfc import jws
from joserfc.jwk import ECKey, Key

from access.care_teams import CareTeamStore
from access.consent import ConsentStatement, Grantee
from access.consent_store import ConsentStore
from access.issuer import ASSERTION_TYPE, Issuer, load_or_create_signing_key
from access.journal import Journal
from access.trail import AccessEvent
from access.users import Role, User
from ledger.entries import EntryKind
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

APP_SCOPES = "system/Observation.rs system/Provenance.rs"
DAY_MS = 86_400_000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_request(
    client_id: str, key: Key, token_endpoint: str, scope: str, alg: str = "ES384"
) -> dict[str, str]:
    """An app's token request, SMART Backend Services: ``client_credentials`` with a
    ``private_key_jwt`` assertion signed by ``key`` (its ``kid`` registered) with ``alg``,
    ES384 or RS384 (the two SMART names)."""
    now = int(time.time())
    assertion = jws.serialize_compact(
        {"alg": alg, "kid": key.kid, "typ": "JWT"},
        json.dumps(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": token_endpoint,
                "exp": now + 240,
                "jti": secrets.token_hex(8),
            }
        ),
        key,
        algorithms=[alg],
    )
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
    }


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = issuer_config(settings)
        self.issuer = Issuer.open(
            settings.data_dir, self.config, hasher=PasswordHasher.from_parameters(CHEAPEST)
        )
        self.key = load_or_create_signing_key(settings.token_key_path)
        self._app_keys: dict[str, ECKey] = {}

    def user(self, name: str, role: Role, patient_id: str | None = None) -> str:
        return self.issuer.token_for(User(name, role, patient_id)).access_token

    def headers(self, name: str, role: Role, patient_id: str | None = None) -> dict[str, str]:
        return bearer(self.user(name, role, patient_id))

    def app(self, client_id: str, scope: str = APP_SCOPES, registered: str = APP_SCOPES) -> str:
        """An app's token the SMART Backend Services way (registered on first use, allowed
        the ``registered`` scopes)."""
        key = self._app_keys.get(client_id)
        if key is None:
            key = ECKey.generate_key("P-384", private=True, parameters={"kid": "k1"})
            public = {**key.as_dict(private=False), "kid": "k1"}
            self.issuer.apps.register(client_id, client_id, {"keys": [public]}, registered)
            self._app_keys[client_id] = key
        form = token_request(client_id, key, self.config.token_endpoint, scope)
        return self.issuer.client_credentials(form).access_token

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A clinician's claims as the issuer writes them, with ``changes`` (None removes)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": "dr-ada",
            "aud": self.config.audience,
            "exp": now + 300,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": "vitaltrail:web",
            "scope": "user/Observation.rs user/Provenance.rs",
            "roles": ["clinician"],
        }
        body.update(changes)
        return {k: v for k, v in body.items() if v is not None}

    def sign(self, claims: Mapping[str, Any], key: Key | None = None, **header: Any) -> str:
        return jws.serialize_compact(
            {"alg": "ES256", "typ": "at+jwt", "kid": self.key.kid, **header},
            json.dumps(dict(claims)),
            key or self.key,
            algorithms=[str(header.get("alg", "ES256"))],
        )

    def close(self) -> None:
        self.issuer.close()


def assign(
    settings: Settings, team: str, clinicians: Iterable[str], patients: Iterable[str]
) -> None:
    """A care team, as an admin assigns it."""
    teams = CareTeamStore(settings.access_db_path)
    teams.create(team)
    for clinician in clinicians:
        teams.add_member(team, clinician)
    for patient in patients:
        teams.add_patient(team, patient)
    teams.close()


def consent(
    settings: Settings,
    patient: str,
    client_id: str,
    *,
    data: tuple[str, ...] = ("vital-signs",),
    purpose: tuple[str, ...] = ("TREAT",),
) -> int:
    """A grant to an app, recorded by staff on the patient's behalf; its seq."""
    journal = Journal(settings.access_journal_path)
    store = ConsentStore(journal)
    now = int(time.time() * 1000)
    seq = store.next_seq(patient)
    statement = ConsentStatement.grant(
        patient, seq, now, Grantee("app", client_id), data=data, purpose=purpose,
        start_ms=now - DAY_MS, end_ms=now + DAY_MS,
    )  # fmt: skip
    store.record_for_patient(statement, "nurse-1", "clinician", "patient asked by phone", now)
    journal.close()
    return seq


def withdraw(settings: Settings, patient: str, grant_seq: int) -> None:
    journal = Journal(settings.access_journal_path)
    store = ConsentStore(journal)
    now = int(time.time() * 1000)
    statement = ConsentStatement.withdrawal(patient, store.next_seq(patient), now, grant_seq)
    store.record_for_patient(statement, "nurse-1", "clinician", "patient asked by phone", now)
    journal.close()


def ward_headers(settings: Settings, patients: Iterable[str]) -> dict[str, str]:
    """A clinician whose care team is ``patients``: the headers of their requests."""
    assign(settings, "ward", ["dr-ward"], patients)
    tokens = Tokens(settings)
    try:
        return tokens.headers("dr-ward", "clinician")
    finally:
        tokens.close()


def writer_and_readers(settings: Settings, patient: str) -> dict[str, dict[str, str]]:
    """The callers of a route that staff write through: ``dr-in`` in the patient's care team,
    ``dr-out`` in none, the patient, an app the patient consented to, an admin."""
    assign(settings, "ward-a", ["dr-in"], [patient])
    consent(settings, patient, "app-yes")
    tokens = Tokens(settings)
    try:
        return {
            "clinician in care team": tokens.headers("dr-in", "clinician"),
            "clinician out of care team": tokens.headers("dr-out", "clinician"),
            "patient self": tokens.headers("pat-0", "patient", patient),
            "app with consent": bearer(tokens.app("app-yes")),
            "admin": tokens.headers("root", "admin"),
        }
    finally:
        tokens.close()


def access_events(settings: Settings) -> list[AccessEvent]:
    """Every access decision in the journal, oldest first."""
    journal = Journal(settings.access_journal_path)
    try:
        return [AccessEvent.decode(r.body) for r in journal.after(0) if r.kind is EntryKind.ACCESS]
    finally:
        journal.close()
