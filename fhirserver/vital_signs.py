"""What each signed LOINC code becomes in FHIR R4: codings, category, profile, UCUM unit.

The table follows the R4 vital-signs profiles (hl7.org/fhir/R4/vitalsigns.html and the
profile pages it links): category ``vital-signs``; heart rate 8867-4 and respiratory rate
9279-1 in ``/min``; body temperature 8310-5 in ``Cel``; oxygen saturation in ``%`` coded
2708-6, which the oxygensat profile requires, plus the 59408-5 (pulse oximetry) a device
signs; blood pressure as the 85354-9 panel whose components are systolic 8480-6 and diastolic
8462-4 in ``mm[Hg]``, with no value of its own. Glucose 2339-0 is not a vital sign in R4 (nor
in ``access.consent_state.VITAL_SIGN_CODES``): category ``laboratory``, as the HL7 CGM
implementation guide files sensor glucose, and no profile claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_SIGNS = "vital-signs"
LABORATORY = "laboratory"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
_CATEGORY_DISPLAY = {VITAL_SIGNS: "Vital Signs", LABORATORY: "Laboratory"}


@dataclass(frozen=True)
class Concept:
    """A LOINC code and its display name."""

    code: str
    display: str | None = None

    def coding(self) -> dict[str, str]:
        coding = {"system": LOINC, "code": self.code}
        if self.display is not None:
            coding["display"] = self.display
        return coding


@dataclass(frozen=True)
class Measure:
    """Something measured: its codes (the profile's own first), name and UCUM unit."""

    concepts: tuple[Concept, ...]
    text: str
    unit: str | None = None  # UCUM code; None for a panel, which has no value
    unit_text: str | None = None  # what valueQuantity.unit shows a person

    def code(self) -> dict[str, Any]:
        """The CodeableConcept of ``Observation.code`` (or a component's ``code``)."""
        return {"coding": [c.coding() for c in self.concepts], "text": self.text}

    def quantity(self, value: float, unit: str) -> dict[str, Any]:
        """A UCUM ``valueQuantity`` of ``value`` in ``unit``, the unit the device signed."""
        shown = self.unit_text if unit == self.unit and self.unit_text else unit
        return {"value": _number(value), "unit": shown, "system": UCUM, "code": unit}


@dataclass(frozen=True)
class Kind:
    """One kind of Observation: a single measure, or a panel of ``components``."""

    code: str  # the code in the Observation's id: the signed code, or the panel's
    measure: Measure
    category: str | None  # None for a code this table does not know
    profile: str | None
    components: tuple[Measure, ...] = ()

    @property
    def component_codes(self) -> tuple[str, ...]:
        return tuple(m.concepts[0].code for m in self.components)

    def category_json(self) -> list[dict[str, Any]]:
        if self.category is None:
            return []
        display = _CATEGORY_DISPLAY[self.category]
        coding = {"system": CATEGORY_SYSTEM, "code": self.category, "display": display}
        return [{"coding": [coding], "text": display}]


def _single(code: str, display: str, profile: str, unit: str, unit_text: str) -> Kind:
    measure = Measure((Concept(code, display),), display, unit, unit_text)
    return Kind(code, measure, VITAL_SIGNS, PROFILE + profile)


HEART_RATE = _single("8867-4", "Heart rate", "heartrate", "/min", "beats/minute")
RESPIRATORY_RATE = _single("9279-1", "Respiratory rate", "resprate", "/min", "breaths/minute")
BODY_TEMPERATURE = _single("8310-5", "Body temperature", "bodytemp", "Cel", "C")
OXYGEN_SATURATION = Kind(
    "59408-5",
    Measure(
        (
            Concept("2708-6", "Oxygen saturation in Arterial blood"),
            Concept("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "Oxygen saturation",
        "%",
        "%",
    ),
    VITAL_SIGNS,
    PROFILE + "oxygensat",
)
SYSTOLIC = Measure((Concept("8480-6", "Systolic blood pressure"),), "Systolic", "mm[Hg]", "mmHg")
DIASTOLIC = Measure((Concept("8462-4", "Diastolic blood pressure"),), "Diastolic", "mm[Hg]", "mmHg")
BLOOD_PRESSURE = Kind(
    "85354-9",
    Measure(
        (Concept("85354-9", "Blood pressure panel with all children optional"),), "Blood pressure"
    ),
    VITAL_SIGNS,
    PROFILE + "bp",
    (SYSTOLIC, DIASTOLIC),
)
GLUCOSE = Kind(
    "2339-0",
    Measure((Concept("2339-0", "Glucose [Mass/volume] in Blood"),), "Glucose", "mg/dL", "mg/dL"),
    LABORATORY,
    None,
)

KINDS = (HEART_RATE, OXYGEN_SATURATION, RESPIRATORY_RATE, BODY_TEMPERATURE, BLOOD_PRESSURE, GLUCOSE)
BY_SAMPLE_CODE: dict[str, Kind] = {
    **{k.code: k for k in KINDS if not k.components},
    **{code: k for k in KINDS for code in k.component_codes},
}


def kind_of(sample_code: str) -> Kind:
    """The kind of Observation a signed sample of ``sample_code`` belongs to. A code the table
    does not know (one logged under older rules) still maps: its LOINC code, no category."""
    known = BY_SAMPLE_CODE.get(sample_code)
    if known is not None:
        return known
    return Kind(sample_code, Measure((Concept(sample_code),), f"LOINC {sample_code}"), None, None)


def observation_code(sample_code: str) -> str:
    """The code an Observation id names for a sample: a blood-pressure component's panel."""
    return kind_of(sample_code).code


def sample_codes_matching(loinc_code: str) -> frozenset[str]:
    """The signed sample codes whose Observations carry ``loinc_code`` in ``Observation.code``
    (a FHIR ``code`` search): 2708-6 finds the 59408-5 samples, 85354-9 both BP components,
    and 8480-6 none (a component's code is not the Observation's). A code the table does not
    know is its own Observation's code."""
    if loinc_code not in BY_SAMPLE_CODE and all(
        c.code != loinc_code for k in KINDS for c in k.measure.concepts
    ):
        return frozenset({loinc_code})
    return frozenset(
        code
        for code, kind in BY_SAMPLE_CODE.items()
        if any(c.code == loinc_code for c in kind.measure.concepts)
    )


def _number(value: float) -> int | float:
    """Whole values as JSON integers, as the reading's CBOR holds them."""
    value = float(value)  # a Sample built in code may hold an int
    return int(value) if value.is_integer() else value
