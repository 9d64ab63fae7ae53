"""The validator every FHIR test relies on (tests/fhir_validation.py) catches what it should:
each invariant and profile rule fails on a resource broken for it, and only then."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from devices.reading import Reading, Sample
from devices.vitals import DIASTOLIC_BP, SYSTOLIC_BP
from fhirserver.observations import observations_of
from fhirserver.provenance import provenance_for
from tests.fhir_validation import check_vital_signs, validate
from tests.stack import signed, vitals

T = 1_763_700_000_000
ABSENT = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}
    ]
}


def _heart_rate() -> dict[str, Any]:
    return observations_of(Reading("band-1", 3, vitals(T)), 9, "patient-1", T)[0]


def _spo2() -> dict[str, Any]:
    return observations_of(Reading("band-1", 3, vitals(T)), 9, "patient-1", T)[1]


def _blood_pressure() -> dict[str, Any]:
    samples = (
        Sample(SYSTOLIC_BP.code, SYSTOLIC_BP.unit, 120, T),
        Sample(DIASTOLIC_BP.code, DIASTOLIC_BP.unit, 80, T),
    )
    return observations_of(Reading("cuff-1", 3, samples), 10, "patient-1", T)[0]


def _unprofiled(observation: dict[str, Any]) -> dict[str, Any]:
    """The invariants alone: no profile claimed, so no profile rule runs."""
    del observation["meta"]["profile"]
    return observation


def test_the_genuine_resources_pass() -> None:
    for observation in (_heart_rate(), _spo2(), _blood_pressure()):
        validate(observation)
        assert check_vital_signs(observation) == []


def _vs1(o: dict[str, Any]) -> None:
    o["effectiveDateTime"] = "2025-11"  # a valid dateTime, but not to the day


def _vs2(o: dict[str, Any]) -> None:
    del o["valueQuantity"]  # no value, no component, no reason


def _vs3(o: dict[str, Any]) -> None:
    del o["component"][1]["valueQuantity"]


def _obs6(o: dict[str, Any]) -> None:
    o["dataAbsentReason"] = ABSENT  # beside a value


def _obs7(o: dict[str, Any]) -> None:
    o["valueQuantity"] = o["component"][0]["valueQuantity"]
    o["component"][0]["code"] = copy.deepcopy(o["code"])  # a component coded as the panel


@pytest.mark.parametrize(
    ("make", "breaks", "key"),
    [
        (_heart_rate, _vs1, "vs-1"),
        (_heart_rate, _vs2, "vs-2"),
        (_blood_pressure, _vs3, "vs-3"),
        (_heart_rate, _obs6, "obs-6"),
        (_blood_pressure, _obs7, "obs-7"),
    ],
)
def test_each_invariant_fails_when_broken(make: Any, breaks: Any, key: str) -> None:
    observation = _unprofiled(make())
    assert check_vital_signs(observation) == []
    breaks(observation)
    validate(observation)  # still well-formed: only the invariant can tell
    assert check_vital_signs(observation) == [key]


def test_a_reason_stands_in_for_a_missing_value() -> None:
    observation = _unprofiled(_heart_rate())
    del observation["valueQuantity"]
    observation["dataAbsentReason"] = ABSENT
    assert check_vital_signs(observation) == []
    panel = _unprofiled(_blood_pressure())
    del panel["component"][1]["valueQuantity"]
    panel["component"][1]["dataAbsentReason"] = ABSENT
    assert check_vital_signs(panel) == []


def _wrong_unit(o: dict[str, Any]) -> None:
    o["valueQuantity"]["code"] = "/s"


def _no_pulse_oximetry_parent(o: dict[str, Any]) -> None:
    o["code"]["coding"] = o["code"]["coding"][1:]  # 59408-5 alone, without 2708-6


def _bp_value(o: dict[str, Any]) -> None:
    o["valueQuantity"] = o["component"][0]["valueQuantity"]


def _bp_one_component(o: dict[str, Any]) -> None:
    del o["component"][1]


def _no_category(o: dict[str, Any]) -> None:
    del o["category"]


def _not_ucum(o: dict[str, Any]) -> None:
    o["valueQuantity"]["system"] = "http://example.org/units"


@pytest.mark.parametrize(
    ("make", "breaks", "keys"),
    [
        (_heart_rate, _wrong_unit, ["heartrate"]),
        (_heart_rate, _not_ucum, ["heartrate"]),
        (_spo2, _no_pulse_oximetry_parent, ["oxygensat"]),
        (_blood_pressure, _bp_value, ["bp"]),
        (_blood_pressure, _bp_one_component, ["bp"]),
        (_heart_rate, _no_category, ["vs-profile"]),
    ],
)
def test_each_profile_rule_fails_when_broken(make: Any, breaks: Any, keys: list[str]) -> None:
    observation = make()
    breaks(observation)
    validate(observation)
    assert check_vital_signs(observation) == keys


@pytest.mark.parametrize(
    "breaks",
    [
        lambda o: o.pop("status"),  # required
        lambda o: o.update(valueQuantty=o["valueQuantity"]),  # no such element
        lambda o: o.update(id="e9_8867-4"),  # not an id
        lambda o: o.update(effectiveDateTime="yesterday"),
        lambda o: o.update(subject=[o["subject"]]),  # one subject, not a list
    ],
)
def test_the_model_refuses_malformed_observations(breaks: Any) -> None:
    observation = _heart_rate()
    breaks(observation)
    with pytest.raises(ValidationError):
        validate(observation)


def test_the_model_refuses_a_provenance_signature_without_a_time() -> None:
    from devices.keys import DeviceSigner

    observation = _heart_rate()
    message = signed("band-1", DeviceSigner.generate(), 3, vitals(T))
    provenance = provenance_for(observation, message, None, "band-1", T)
    validate(provenance)
    del provenance["signature"][0]["when"]
    with pytest.raises(ValidationError, match="when"):
        validate(provenance)


def test_an_unknown_resource_type_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid FHIR Model"):
        validate({"resourceType": "Observaton"})


def test_a_bundles_entries_are_validated_with_it() -> None:
    observation = _heart_rate()
    entries = [{"fullUrl": f"urn:uuid:{observation['id']}", "resource": observation}]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    validate(bundle)
    del observation["code"]
    with pytest.raises(ValidationError, match="code"):
        validate(bundle)
