"""The consent routes' rules for callers a password sign-in never makes: an app's token, a
patient token without a patient, scopes that do not delegate the route."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access.scopes import ScopeSet
from access.tokens import Principal
from tests.consent_app import consent_app

PATIENT_SCOPES = "patient/Consent.cruds"


def principal_of(
    *,
    kind: str = "user",
    roles: frozenset[str] = frozenset({"patient"}),
    scopes: str = PATIENT_SCOPES,
    patient: str | None = "p-17",
) -> Callable[[], Principal]:
    fixed = Principal(
        subject="someone", client_id="telemed-1" if kind == "app" else "vitaltrail:web",
        kind=kind, roles=roles, scopes=ScopeSet.parse(scopes), token_id="jti-1",  # type: ignore[arg-type]
        issuer="https://vitaltrail.test", expires_at=2_000_000_000, patient=patient,
    )  # fmt: skip
    return lambda: fixed


STAFF_BODY = {
    "reason": "paper form",
    "statement": {"status": "inactive", "ends": 0},
}


@pytest.mark.parametrize(
    ("caller", "method", "path", "status", "reason"),
    [
        (
            principal_of(kind="app", roles=frozenset()),
            "GET",
            "/api/v1/me/consents",
            403,
            "not-a-patient",
        ),
        (
            principal_of(kind="app", roles=frozenset({"clinician"})),
            "POST",
            "/api/v1/patients/p-17/consents",
            403,
            "not-staff",
        ),
        (principal_of(patient=None), "GET", "/api/v1/me/consents", 403, "no-patient-context"),
        (
            principal_of(scopes="patient/Observation.rs"),
            "GET",
            "/api/v1/me/consents",
            403,
            "insufficient-scope",
        ),
        (
            principal_of(scopes="patient/Consent.r"),
            "POST",
            "/api/v1/me/consents",
            403,
            "insufficient-scope",
        ),
        (
            principal_of(roles=frozenset({"clinician"}), scopes="user/Patient.rs"),
            "POST",
            "/api/v1/patients/p-17/consents",
            403,
            "insufficient-scope",
        ),
    ],
    ids=["app-me", "app-staff", "no-patient", "no-consent-scope", "read-only-scope", "staff-scope"],
)
def test_callers_the_rules_refuse(
    tmp_path: Path,
    caller: Callable[[], Principal],
    method: str,
    path: str,
    status: int,
    reason: str,
) -> None:
    made = consent_app(tmp_path, principal=caller)
    body = STAFF_BODY if "patients" in path else {"message": "AA"}
    with TestClient(made.app) as client:
        r = client.request(method, path, json=body if method == "POST" else None)
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason
    assert made.services.refusals[reason] == 1
    if reason == "insufficient-scope":
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert made.journal.after(0) == []
    made.close()
