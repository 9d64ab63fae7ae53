"""The access policy as a table: each row a caller, a request and the decision it must get."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from access.consent import ConsentStatement, Grantee
from access.policy import (
    ADMIN_READS_NONE,
    BAD_BREAK_GLASS,
    BAD_PURPOSE,
    INSUFFICIENT_SCOPE,
    NO_CONSENT,
    NO_PATIENT_CONTEXT,
    NO_ROLE,
    NONE_VISIBLE,
    NOT_IN_CARE_TEAM,
    NOT_OWN_RECORD,
    AccessRequest,
    DataClass,
    Policy,
)
from access.scopes import ScopeSet
from access.tokens import Kind, Principal
from access.trail import BREAK_GLASS, AccessEvent
from tests.access_helpers import NOW, grant

CLINICIAN_SCOPES = "user/Patient.rs user/Observation.rs user/Provenance.rs"
PATIENT_SCOPES = "patient/Patient.rs patient/Observation.rs patient/Provenance.rs"


def principal(
    subject: str,
    roles: tuple[str, ...] = (),
    scope: str = "",
    *,
    kind: Kind = "user",
    patient: str | None = None,
    claims: dict[str, Any] | None = None,
) -> Principal:
    return Principal(
        subject=subject,
        client_id=subject if kind == "app" else "vitaltrail:web",
        kind=kind,
        roles=frozenset(roles),
        scopes=ScopeSet.parse(scope),
        token_id=f"jti-{subject}",
        issuer="https://issuer.test",
        expires_at=NOW // 1000 + 300,
        patient=patient,
        claims=claims or {},
    )


ADA = principal("dr-ada", ("clinician",), CLINICIAN_SCOPES)  # care team: p-1, p-2
ADA_NO_SCOPE = principal("dr-ada", ("clinician",), "user/Device.rs")
PAT1 = principal("pat-1", ("patient",), PATIENT_SCOPES, patient="p-1")
PAT_NO_CLAIM = principal("pat-9", ("patient",), PATIENT_SCOPES)  # the user directory says p-9
PAT_UNKNOWN = principal("pat-x", ("patient",), PATIENT_SCOPES)
ADMIN = principal("root", ("admin",), "user/Device.cruds user/Practitioner.cruds")
ADMIN_CLINICIAN = principal("dr-root", ("admin", "clinician"), CLINICIAN_SCOPES)
NOBODY = principal("who", (), CLINICIAN_SCOPES)
APP = principal("telemed-1", (), "system/Observation.rs system/Provenance.rs", kind="app")
APP_PATIENT_SCOPE = principal("telemed-1", (), "patient/Observation.rs", kind="app", patient="p-1")
APP_PATIENT_SCOPE_NO_CONTEXT = principal("telemed-1", (), "patient/Observation.rs", kind="app")
APP_OTHER = principal("telemed-2", (), "system/Observation.rs system/Provenance.rs", kind="app")
APP_RESTRICTED = principal(
    "telemed-1",
    (),
    "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
    kind="app",
)
APP_LAB_ONLY = principal("telemed-1", (), "system/Observation.rs?category=laboratory", kind="app")
APP_PURPOSE = principal(
    "telemed-1", (), "system/Observation.rs", kind="app", claims={"purpose_of_use": "PATRQT"}
)

# p-1 consented to telemed-1 for vital signs, TREAT only; p-3 for glucose, TREAT.
GRANTS = {
    ("p-1", "vital-signs"): grant(0, "p-1", purpose=["TREAT"]),
    ("p-3", "2339-0"): grant(0, "p-3", data=["2339-0"], purpose=["TREAT"]),
}


def consent(
    patient: str, grantee: Grantee, data: str, purpose: str, at_ms: int
) -> ConsentStatement | None:
    found = GRANTS.get((patient, data))
    if found is None or found.grantee != grantee or purpose not in found.purpose:
        return None
    return found


POLICY = Policy(
    lambda user: frozenset({"p-1", "p-2"}) if user in ("dr-ada", "dr-root") else frozenset(),
    consent,
    patient_of_user=lambda user: {"pat-9": "p-9"}.get(user),
)


@dataclass(frozen=True)
class Row:
    who: Principal
    patients: tuple[str, ...] | None
    reason: str  # the decision's reason code
    permit: bool
    data_class: DataClass = "vital-signs"
    codes: tuple[str, ...] = ()
    purpose: str | None = None
    break_glass: str | None = None


TABLE = [
    # clinicians: their care team, nobody else's unless they break the glass
    Row(ADA, ("p-1",), "care-team", True),
    Row(ADA, ("p-2",), "care-team", True, "proofs"),
    Row(ADA, ("p-3",), NOT_IN_CARE_TEAM, False),
    Row(ADA, ("p-3",), NOT_IN_CARE_TEAM, False, break_glass="   "),
    Row(ADA, ("p-3",), BREAK_GLASS, True, break_glass="unconscious in A&E"),
    Row(ADA, ("p-3",), BAD_BREAK_GLASS, False, break_glass="line\nbreak"),
    Row(ADA, ("p-3",), BAD_BREAK_GLASS, False, break_glass="x" * 1025),
    Row(ADA_NO_SCOPE, ("p-1",), INSUFFICIENT_SCOPE, False),
    Row(ADA_NO_SCOPE, ("p-3",), INSUFFICIENT_SCOPE, False, break_glass="emergency"),
    Row(ADA, ("p-1",), BAD_PURPOSE, False, purpose="treat"),
    Row(ADMIN_CLINICIAN, ("p-1",), "care-team", True),  # the clinician rule matches first
    # patients: their own record only
    Row(PAT1, ("p-1",), "self", True),
    Row(PAT1, ("p-1",), "self", True, "readings"),
    Row(PAT1, ("p-2",), NOT_OWN_RECORD, False),
    Row(PAT1, ("p-2",), NOT_OWN_RECORD, False, break_glass="I am a doctor"),
    Row(PAT_NO_CLAIM, ("p-9",), "self", True),
    Row(PAT_NO_CLAIM, ("p-1",), NOT_OWN_RECORD, False),
    Row(PAT_UNKNOWN, ("p-1",), NO_PATIENT_CONTEXT, False),
    # apps: a consent in force, for that data and purpose, within their scopes
    Row(APP, ("p-1",), "consent", True),
    Row(APP, ("p-1",), "consent", True, "proofs", codes=("8867-4",)),
    Row(APP, ("p-1",), NO_CONSENT, False, "readings", codes=("8867-4", "2339-0")),
    Row(APP, ("p-3",), "consent", True, "vital-signs", codes=("2339-0",)),
    Row(APP, ("p-3",), NO_CONSENT, False),  # glucose is not a vital sign
    Row(APP, ("p-2",), NO_CONSENT, False),
    Row(APP, ("p-1",), NO_CONSENT, False, purpose="PATRQT"),
    Row(APP_PURPOSE, ("p-1",), NO_CONSENT, False),  # the token's purpose is not granted
    Row(APP, ("p-2",), NO_CONSENT, False, break_glass="apps do not break glass"),
    Row(APP_OTHER, ("p-1",), NO_CONSENT, False),
    Row(APP_PATIENT_SCOPE, ("p-1",), "consent", True),
    Row(APP_PATIENT_SCOPE, ("p-3",), NO_CONSENT, False, codes=("2339-0",)),  # not its patient
    Row(APP_PATIENT_SCOPE_NO_CONTEXT, ("p-1",), NO_PATIENT_CONTEXT, False),
    Row(APP_PATIENT_SCOPE, ("p-1",), INSUFFICIENT_SCOPE, False, "proofs"),
    Row(APP_RESTRICTED, ("p-1",), "consent", True),
    Row(APP_RESTRICTED, ("p-1",), INSUFFICIENT_SCOPE, False, "proofs"),
    Row(APP_LAB_ONLY, ("p-1",), INSUFFICIENT_SCOPE, False),
    # admins and role-less callers read nothing
    Row(ADMIN, ("p-1",), ADMIN_READS_NONE, False),
    Row(ADMIN, ("p-1",), ADMIN_READS_NONE, False, break_glass="curious"),
    Row(NOBODY, ("p-1",), NO_ROLE, False),
    # listings: the patients the caller may see among those there are
    Row(ADA, None, "care-team", True),
    Row(PAT1, None, "self", True),
    Row(APP, None, "consent", True),
    Row(ADMIN, None, ADMIN_READS_NONE, False),
    Row(APP_OTHER, None, NONE_VISIBLE, False),
    Row(PAT_NO_CLAIM, None, NONE_VISIBLE, False),  # p-9 has no data here
]
CANDIDATES = ("p-1", "p-2", "p-3")
VISIBLE = {ADA: ("p-1", "p-2"), PAT1: ("p-1",), APP: ("p-1",)}


def _id(row: Row) -> str:
    return f"{row.who.subject}-{row.patients}-{row.data_class}-{row.reason}"


@pytest.mark.parametrize("row", TABLE, ids=_id)
def test_the_policy_table(row: Row) -> None:
    request = AccessRequest(
        row.data_class, row.patients, CANDIDATES, row.codes, row.purpose, row.break_glass
    )
    decision = POLICY.decide(row.who, request, NOW)
    assert (decision.reason, decision.permit) == (row.reason, row.permit)
    if row.patients is None and decision.permit:
        assert decision.patients == VISIBLE[row.who]
    elif row.patients is not None:
        assert decision.patients == row.patients
    assert decision.is_break_glass == (row.reason == BREAK_GLASS)
    if decision.permit and row.who.kind == "app":
        assert decision.consents  # an app's permit names the grants it relied on
    else:
        assert decision.consents == ()
    # every decision makes a valid access event (the trail validates it)
    access = decision.access(row.who, NOW, "GET /api/v1/patients/{patient_id}/vitals")
    AccessEvent("trail", 1, access).encode()
    assert access.outcome == ("permit" if row.permit else "deny")


def test_purposes_default_by_role_and_an_app_may_name_its_own() -> None:
    read = AccessRequest("vital-signs", ("p-1",))
    assert POLICY.decide(ADA, read, NOW).purpose == ("TREAT",)
    assert POLICY.decide(PAT1, read, NOW).purpose == ("PATRQT",)
    assert POLICY.decide(APP, read, NOW).purpose == ("TREAT",)
    assert POLICY.decide(APP_PURPOSE, read, NOW).purpose == ("PATRQT",)
    assert POLICY.decide(ADA, replace(read, purpose="HPAYMT"), NOW).purpose == ("HPAYMT",)


def test_an_app_sees_only_the_codes_its_consents_cover() -> None:
    decision = POLICY.decide(APP, AccessRequest("vital-signs", ("p-1",)), NOW)
    assert decision.data == ("vital-signs",)
    assert decision.consents == (("p-1", 0),)
    assert decision.shows("8867-4")
    assert not decision.shows("2339-0")  # glucose needs a grant of its own
    clinician = POLICY.decide(ADA, AccessRequest("vital-signs", ("p-1",)), NOW)
    assert clinician.shows("2339-0")


def test_a_token_restricted_to_the_vital_signs_category_sees_no_glucose() -> None:
    """SMART v2's ``user/Observation.rs?category=...|vital-signs``: the clinician's care team
    still decides whom, the scope limits what - glucose (laboratory) is refused when asked for
    by code and left out of whatever else is read."""
    vitals = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    ada = principal("dr-ada", ("clinician",), f"user/Observation.rs?category={vitals}")
    read = POLICY.decide(ada, AccessRequest("vital-signs", ("p-1",)), NOW)
    assert (read.permit, read.vital_signs_only, read.filtered) == (True, True, True)
    assert read.shows("8867-4")
    assert not read.shows("2339-0")
    glucose = POLICY.decide(ada, AccessRequest("vital-signs", ("p-1",), (), ("2339-0",)), NOW)
    assert (glucose.permit, glucose.reason) == (False, INSUFFICIENT_SCOPE)
    pulse = POLICY.decide(ada, AccessRequest("vital-signs", ("p-1",), (), ("8867-4",)), NOW)
    assert pulse.permit
    listing = POLICY.decide(ada, AccessRequest("vital-signs", None, ("p-1", "p-3")), NOW)
    assert (listing.patients, listing.vital_signs_only) == (("p-1",), True)
    glass = POLICY.decide(
        ada, AccessRequest("vital-signs", ("p-3",), break_glass="collapsed in the corridor"), NOW
    )
    assert (glass.reason, glass.shows("2339-0")) == (BREAK_GLASS, False)
    unrestricted = POLICY.decide(ADA, AccessRequest("vital-signs", ("p-1",)), NOW)
    assert (unrestricted.vital_signs_only, unrestricted.filtered) == (False, False)
    app = POLICY.decide(APP_RESTRICTED, AccessRequest("vital-signs", ("p-1",)), NOW)
    assert (app.vital_signs_only, app.shows("2339-0")) == (True, False)


def test_a_break_glass_decision_carries_the_reason_into_the_trail() -> None:
    request = AccessRequest("readings", ("p-3",), break_glass="  collapsed on the ward  ")
    decision = POLICY.decide(ADA, request, NOW)
    access = decision.access(ADA, NOW, "GET /api/v1/readings/{index}")
    assert access.break_glass == "collapsed on the ward"
    assert access.reason == BREAK_GLASS
    assert access.agent.client == "vitaltrail:web"
    assert access.agent.jti == "jti-dr-ada"
    assert access.purpose == ("ETREAT",)  # emergency treatment, unless the request names one
    named = replace(request, purpose="PUBHLTH")
    assert POLICY.decide(ADA, named, NOW).purpose == ("PUBHLTH",)
    assert POLICY.decide(ADA, replace(request, break_glass=None), NOW).purpose == ("TREAT",)


def test_identifiers_the_trail_cannot_hold_are_recorded_by_digest() -> None:
    odd = replace(ADA, token_id="a jti with spaces", subject="dr ada")
    decision = POLICY.decide(odd, AccessRequest("vital-signs", ("p-1",)), NOW)
    access = decision.access(odd, NOW, "GET /x")
    assert access.agent.jti is not None
    assert access.agent.jti.startswith("sha256:")
    assert access.agent.id.startswith("sha256:")
    AccessEvent("trail", 1, access).encode()


ADA_WRITES = principal("dr-ada", ("clinician",), CLINICIAN_SCOPES + " user/Observation.c")


@pytest.mark.parametrize(
    ("who", "patient", "break_glass", "reason", "permit"),
    [
        (ADA_WRITES, "p-1", None, "care-team", True),
        (ADA_WRITES, "p-7", None, "not-in-care-team", False),
        (ADA_WRITES, "p-7", "arrest", BREAK_GLASS, True),
        (ADA, "p-1", None, "insufficient-scope", False),  # reads, no .c scope
        (PAT1, "p-1", None, "may-not-write", False),
        (APP, "p-1", None, "may-not-write", False),
        (ADMIN, "p-1", None, "admin-reads-no-patient-data", False),
    ],
)
def test_only_a_clinician_writes_on_the_basis_they_read(
    who: Principal, patient: str, break_glass: str | None, reason: str, permit: bool
) -> None:
    asked = AccessRequest("vital-signs", (patient,), break_glass=break_glass, write=True)
    decision = POLICY.decide(who, asked, NOW)
    assert (decision.reason, decision.permit, decision.interaction) == (reason, permit, "create")
