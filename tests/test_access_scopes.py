"""SMART App Launch v2 scopes, table-driven from the spec's own examples
(HL7 smart-app-launch 2.2.0, "Scopes and Launch Context")."""

from __future__ import annotations

import pytest

from access.errors import ScopeError
from access.scopes import Context, Interaction, Scope, ScopeSet, permits

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LABS = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

# scope text -> (context, resource, interaction letters, query)
PARSED = [
    ("patient/Observation.rs", ("patient", "Observation", "rs", ())),
    ("patient/*.rs", ("patient", "*", "rs", ())),
    ("user/*.cruds", ("user", "*", "cruds", ())),
    ("user/Appointment.cruds", ("user", "Appointment", "cruds", ())),
    ("patient/Observation.c", ("patient", "Observation", "c", ())),
    ("user/Encounter.cu", ("user", "Encounter", "cu", ())),
    ("system/Observation.rs", ("system", "Observation", "rs", ())),
    ("system/*.rs", ("system", "*", "rs", ())),
    # SMART v1 permissions, as v2 maps them
    ("patient/Observation.read", ("patient", "Observation", "rs", ())),
    ("patient/Observation.write", ("patient", "Observation", "cud", ())),
    ("user/*.*", ("user", "*", "cruds", ())),
    # granular scopes with a query restriction
    (
        f"patient/Observation.rs?category={LABS}",
        ("patient", "Observation", "rs", (("category", LABS),)),
    ),
    (
        "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|health-concern",
        (
            "patient",
            "Condition",
            "rs",
            (
                (
                    "category",
                    "http://terminology.hl7.org/CodeSystem/condition-category|health-concern",
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_scope_parses_into_its_parts(
    text: str, expected: tuple[str, str, str, tuple[tuple[str, str], ...]]
) -> None:
    scope = Scope.parse(text)
    context, resource, letters, query = expected
    assert (scope.context, scope.resource, scope.query) == (context, resource, query)
    assert scope.interactions == frozenset(letters)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("patient/Observation.read", "patient/Observation.rs"),
        ("user/*.*", "user/*.cruds"),
        ("system/Observation.rs", "system/Observation.rs"),
        (f"patient/Observation.rs?category={VITALS}", f"patient/Observation.rs?category={VITALS}"),
    ],
)
def test_scope_prints_in_v2_form(text: str, canonical: str) -> None:
    assert str(Scope.parse(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rrs",  # a letter twice
        "patient/Observation.x",  # not an interaction
        "patient/Observation.",  # no interactions
        "patient/observation.rs",  # resource types are capitalised
        "patient/Observation.read?category=x",  # v1 scopes take no query
        "patient/Observation.rs?category",  # a query without a value
        "patient/Observation.r*",
    ],
)
def test_malformed_resource_scope_is_refused(text: str) -> None:
    with pytest.raises(ScopeError):
        Scope.parse(text)
    with pytest.raises(ScopeError):
        ScopeSet.parse(f"openid {text}")


def test_non_resource_scopes_are_kept_aside_and_grant_nothing() -> None:
    granted = ScopeSet.parse("openid fhirUser launch/patient offline_access patient/Observation.rs")
    assert granted.other == {"openid", "fhirUser", "launch/patient", "offline_access"}
    assert {str(s) for s in granted.scopes} == {"patient/Observation.rs"}
    assert not ScopeSet.parse("openid fhirUser launch/patient").permits("patient", "Patient", "r")


# granted scopes, request (context, resource, interaction, facts), permitted?
DECISIONS: list[tuple[str, Context, str, Interaction, dict[str, str], bool]] = [
    ("patient/Observation.rs", "patient", "Observation", "r", {}, True),
    ("patient/Observation.rs", "patient", "Observation", "s", {}, True),
    ("patient/Observation.rs", "patient", "Observation", "c", {}, False),
    ("patient/Observation.rs", "patient", "Patient", "r", {}, False),
    ("patient/Observation.rs", "user", "Observation", "r", {}, False),  # context matters
    ("patient/Observation.rs", "system", "Observation", "r", {}, False),
    ("patient/*.rs", "patient", "Provenance", "r", {}, True),
    ("patient/*.rs", "patient", "Consent", "u", {}, False),
    ("user/*.cruds", "user", "Consent", "u", {}, True),
    ("user/*.cruds", "patient", "Consent", "u", {}, False),
    ("system/Observation.rs", "system", "Observation", "s", {}, True),
    ("system/Observation.rs", "system", "AuditEvent", "s", {}, False),
    ("patient/Observation.read", "patient", "Observation", "s", {}, True),
    ("patient/Observation.write", "patient", "Observation", "r", {}, False),
    ("patient/Observation.write", "patient", "Observation", "d", {}, True),
    ("openid fhirUser", "user", "Observation", "r", {}, False),
    ("", "patient", "Observation", "r", {}, False),
    # a restricted scope permits only requests known to stay inside the restriction
    (
        f"patient/Observation.rs?category={VITALS}",
        "patient",
        "Observation",
        "s",
        {"category": VITALS},
        True,
    ),
    (f"patient/Observation.rs?category={VITALS}", "patient", "Observation", "s", {}, False),
    (
        f"patient/Observation.rs?category={VITALS}",
        "patient",
        "Observation",
        "s",
        {"category": LABS},
        False,
    ),
    (
        f"patient/Observation.rs?category={VITALS} patient/Observation.rs?category={LABS}",
        "patient",
        "Observation",
        "r",
        {"category": LABS},
        True,
    ),
    # an unrestricted scope beside a restricted one still permits everything of that type
    (
        f"patient/Observation.rs?category={VITALS} patient/Observation.r",
        "patient",
        "Observation",
        "r",
        {},
        True,
    ),
]


@pytest.mark.parametrize(
    ("granted", "context", "resource", "interaction", "facts", "allowed"), DECISIONS
)
def test_scope_set_decides(
    granted: str,
    context: Context,
    resource: str,
    interaction: Interaction,
    facts: dict[str, str],
    allowed: bool,
) -> None:
    assert permits(ScopeSet.parse(granted), context, resource, interaction, facts) is allowed


def test_scope_set_round_trips_through_text() -> None:
    text = f"openid patient/Observation.rs?category={VITALS} user/*.cruds"
    assert ScopeSet.parse(str(ScopeSet.parse(text))) == ScopeSet.parse(text)


@pytest.mark.parametrize(
    ("allowed", "requested", "granted"),
    [
        ("system/Observation.rs", "system/Observation.rs", "system/Observation.rs"),
        ("system/Observation.rs", "system/Observation.r", "system/Observation.r"),
        (
            "system/*.rs",
            "system/Observation.rs system/Patient.s",
            "system/Observation.rs system/Patient.s",
        ),
        ("system/Observation.rs", "system/Observation.cruds", ""),
        ("system/Observation.rs", "system/*.rs", ""),
        ("system/Observation.rs", "user/Observation.rs", ""),
        (f"system/Observation.rs?category={VITALS}", "system/Observation.rs", ""),
        (
            f"system/Observation.rs?category={VITALS}",
            f"system/Observation.r?category={VITALS}",
            f"system/Observation.r?category={VITALS}",
        ),
        (
            "system/Observation.rs",
            f"system/Observation.rs?category={LABS}",
            f"system/Observation.rs?category={LABS}",
        ),
        ("system/Observation.rs", "openid system/Observation.s", "system/Observation.s"),
    ],
)
def test_requested_scopes_are_granted_only_within_the_allowed(
    allowed: str, requested: str, granted: str
) -> None:
    assert ScopeSet.parse(requested).within(ScopeSet.parse(allowed)) == ScopeSet.parse(granted)
