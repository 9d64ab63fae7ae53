"""Shared makings of the access tests: a journal, a patient with a key, grants and accesses."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from access.consent import ConsentStatement, Grantee, SignedConsent, sign_consent
from access.journal import Journal
from access.trail import PERMIT, READ, Access, Agent
from devices.keys import DeviceSigner

NOW = 1_763_700_000_000
DAY = 86_400_000
APP = Grantee("app", "telemed-1")


def signer(label: str) -> DeviceSigner:
    return DeviceSigner.from_seed(hashlib.sha256(label.encode()).digest())


PATIENT_KEY = signer("patient p-17")


def journal(tmp_path: Path, name: str = "access-journal.sqlite") -> Journal:
    return Journal(tmp_path / name)


def grant(seq: int = 0, patient: str = "p-17", **overrides: Any) -> ConsentStatement:
    fields: dict[str, Any] = {
        "data": ["vital-signs"],
        "purpose": ["TREAT", "PATRQT"],
        "start_ms": NOW - DAY,
        "end_ms": NOW + 30 * DAY,
    }
    fields |= overrides
    grantee = fields.pop("grantee", APP)
    time_ms = fields.pop("time_ms", NOW - DAY)
    return ConsentStatement.grant(patient, seq, time_ms, grantee, **fields)


def signed_grant(seq: int = 0, **overrides: Any) -> SignedConsent:
    return sign_consent(PATIENT_KEY, grant(seq, **overrides))


def app_read(patients: tuple[str, ...] = ("p-17",), **overrides: Any) -> Access:
    fields: dict[str, Any] = {
        "time_ms": NOW,
        "agent": Agent("app", APP.id, "app", jti="jti-1"),
        "patients": patients,
        "data": ["vital-signs"],
        "purpose": ["TREAT"],
        "outcome": PERMIT,
        "reason": "consent",
        "interaction": READ,
        "route": "GET /api/v1/patients/{patient_id}/vitals",
        "consents": [(p, 0) for p in patients],
    }
    fields |= overrides
    return Access(**fields)


def user_read(user: str, role: str, patients: tuple[str, ...], **overrides: Any) -> Access:
    fields: dict[str, Any] = {
        "agent": Agent("user", user, role, client="vitaltrail-web", jti=f"jti-{user}"),
        "reason": "care-team",
        "consents": [],
        "purpose": ["TREAT"],
    }
    fields |= overrides
    return app_read(patients, **fields)
