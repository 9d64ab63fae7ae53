"""Is a resource valid FHIR R4? Structure by a model library, profile rules by FHIRPath.

:func:`validate` parses a resource with fhir.resources' R4B model of its type (8.x has no pure
R4 models; the elements vitaltrail writes are the same in R4B, see docs/decisions.md): types,
cardinality, unknown elements, id and instant formats; a Bundle's entries are parsed with the
model of each one's type. It does not know profiles.

:func:`check_vital_signs` evaluates, with fhirpathpy on its R4 model, the invariants the issue
names, copied from the R4 specification:

- vs-1, vs-2, vs-3: the Vital Signs profile, hl7.org/fhir/R4/vitalsigns.html (its
  StructureDefinition, vitalsigns.profile.json: constraints on Observation.effective[x],
  Observation and Observation.component);
- obs-6, obs-7: Observation itself, hl7.org/fhir/R4/observation.html#invs;

and, for an Observation that claims an R4 vital-signs profile in ``meta.profile``, what that
profile fixes (``vs-profile``: category vital-signs, subject, effective[x]; ``<profile>``: the
LOINC code and UCUM unit of hl7.org/fhir/R4/heartrate.html, resprate, oxygensat, bodytemp,
bp). It takes one Observation: run it on each of a Bundle's. A rule is broken when its
expression is false for one of its context's nodes (an empty result is not a violation, as in
the HL7 validator).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from fhirpathpy import evaluate
from fhirpathpy.models import models

R4 = models["r4"]
PROFILE = "http://hl7.org/fhir/StructureDefinition/"

# key -> (context, expression), as in the R4 StructureDefinitions
INVARIANTS: dict[str, tuple[str, str]] = {
    "vs-1": ("Observation.effective", "($this as dateTime).toString().length() >= 8"),
    "vs-2": (
        "Observation",
        "(component.empty() and hasMember.empty()) implies"
        " (dataAbsentReason.exists() or value.exists())",
    ),
    "vs-3": ("Observation.component", "value.exists() or dataAbsentReason.exists()"),
    "obs-6": ("Observation", "dataAbsentReason.empty() or value.empty()"),
    "obs-7": (
        "Observation",
        "value.empty() or component.code.where(coding.intersect(%resource.code.coding)"
        ".exists()).empty()",
    ),
}

_VITAL_SIGNS = (
    "category.where(coding.where(system = 'http://terminology.hl7.org/CodeSystem/"
    "observation-category' and code = 'vital-signs').exists()).count() = 1"
    " and subject.exists() and effective.exists()"
)


def _coded(code: str, unit: str | None) -> str:
    rule = f"code.coding.where(system = 'http://loinc.org' and code = '{code}').exists()"
    if unit is not None:
        rule += (
            " and valueQuantity.system = 'http://unitsofmeasure.org'"
            f" and valueQuantity.code = '{unit}'"
        )
    return rule


def _component(code: str) -> str:
    return (
        f"component.where(code.coding.where(system = 'http://loinc.org' and code = '{code}')"
        ".exists() and (dataAbsentReason.exists() or (valueQuantity.system ="
        " 'http://unitsofmeasure.org' and valueQuantity.code = 'mm[Hg]'))).count() = 1"
    )


# profile -> what it fixes (R4: heartrate.html, resprate.html, oxygensat.html, bodytemp.html, bp.html)
PROFILE_RULES: dict[str, str] = {
    "heartrate": _coded("8867-4", "/min"),
    "resprate": _coded("9279-1", "/min"),
    "oxygensat": _coded("2708-6", "%"),
    "bodytemp": _coded("8310-5", None)
    + " and (valueQuantity.code = 'Cel' or valueQuantity.code = '[degF]')",
    "bp": _coded("85354-9", None)
    + f" and {_component('8480-6')} and {_component('8462-4')} and value.empty()",
}


def validate(resource: dict[str, Any]) -> Resource:
    """Parse ``resource`` with the R4B model its ``resourceType`` names; a pydantic
    ``ValidationError`` says what is wrong."""
    model = get_fhir_model_class(resource["resourceType"])
    parsed = model.model_validate(resource)
    assert isinstance(parsed, Resource)
    return parsed


def check_vital_signs(observation: dict[str, Any]) -> list[str]:
    """The keys of the rules ``observation`` breaks, in order; empty when it keeps them all."""
    rules = dict(INVARIANTS)
    claimed = [p.removeprefix(PROFILE) for p in observation.get("meta", {}).get("profile", [])]
    if any(p in PROFILE_RULES or p == "vitalsigns" for p in claimed):
        rules["vs-profile"] = ("Observation", _VITAL_SIGNS)
    rules |= {p: ("Observation", PROFILE_RULES[p]) for p in claimed if p in PROFILE_RULES}
    return [key for key, (context, rule) in rules.items() if not _holds(observation, context, rule)]


def _holds(resource: dict[str, Any], context: str, rule: str) -> bool:
    found = evaluate(
        resource, f"{context}.where(({rule}).not()).empty()", {"resource": resource}, R4
    )
    assert found in ([True], [False]), f"{rule!r} gave {found!r}"
    return bool(found[0])
