"""The FHIR R4 mapping on real readings: one Observation per vital per the R4 vital-signs
profiles, stable ids, Provenance that `vitaltrail verify` accepts, Patient, Device, outcomes.

The readings go through the real ingest pipeline into a real ledger (a band, a cuff and a CGM,
as the simulator's ward has them); every resource made from them is checked with
tests/fhir_validation.py.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.fhir import instant
from dashboards.bundles import (
    NotSealed,
    RecordedReading,
    proof_bundle_for,
    recorded_reading,
)
from devices.boundary import caught_at_boundary
from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import MAX_SAMPLES, Reading, Sample
from devices.registry import DeviceRecord, DeviceRegistry
from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    GLUCOSE,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
)
from fhirserver.directory import (
    DEVICE_KID_SYSTEM,
    NotAFhirId,
    device_resource,
    patient_resource,
    reference,
    thumbprint_uri,
)
from fhirserver.observations import (
    ObservationIdError,
    observation_id,
    observations_of,
    parse_observation_id,
)
from fhirserver.outcome import operation_outcome
from fhirserver.provenance import LEDGER_PROOF, PENDING, SEALED, provenance_for, provenance_id
from fhirserver.vital_signs import observation_code, sample_codes_matching
from ingest.mqtt_source import InboundMessage
from ledger.ledger import LedgerReader
from ledger.note import NoteVerifier
from ledger.verifier import verify_bundle
from tests.fhir_validation import check_vital_signs, validate
from tests.hostile import FAST
from tests.stack import now_ms, signed, vitals
from vitaltrail.cli import main
from vitaltrail.runtime import build_ingest
from vitaltrail.settings import Settings

PATIENT = "patient-001"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass
class Ward:
    """A ledger holding one sealed reading per device kind, and one the ledger has not sealed."""

    settings: Settings
    signers: dict[str, DeviceSigner]
    messages: dict[str, bytes]  # device -> the signed message of its sealed reading
    sealed: dict[str, int]  # device -> the entry index of that reading
    unsealed: int  # the entry index of the band's second reading

    def recorded(self, index: int) -> RecordedReading:
        reader = LedgerReader(self.settings.ledger_path)
        try:
            return recorded_reading(reader, index)
        finally:
            reader.close()

    def observations(self, device: str) -> list[dict[str, Any]]:
        recorded = self.recorded(self.sealed[device])
        return observations_of(
            recorded.reading, recorded.index, PATIENT, recorded.entry.logged_at_ms
        )

    def device(self, device: str) -> DeviceRecord:
        registry = DeviceRegistry(self.settings.registry_path)
        try:
            record = registry.get(device)
        finally:
            registry.close()
        assert record is not None
        return record


def _samples(t: int) -> dict[str, tuple[Sample, ...]]:
    return {
        "p1-band": (
            *vitals(t, hr=72, spo2=97),
            Sample(RESPIRATORY_RATE.code, RESPIRATORY_RATE.unit, 16, t),
            Sample(BODY_TEMPERATURE.code, BODY_TEMPERATURE.unit, 36.9, t),
        ),
        "p1-cuff": (
            Sample(SYSTOLIC_BP.code, SYSTOLIC_BP.unit, 124, t),
            Sample(DIASTOLIC_BP.code, DIASTOLIC_BP.unit, 79, t),
        ),
        "p1-cgm": (Sample(GLUCOSE.code, GLUCOSE.unit, 104.5, t),),
    }


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Ward:
    settings = Settings(data_dir=tmp_path_factory.mktemp("fhir") / "data", check_workers=0)
    runtime = build_ingest(settings)
    registry = DeviceRegistry(settings.registry_path)
    signers = {device: DeviceSigner.generate() for device in ("p1-band", "p1-cuff", "p1-cgm")}
    for device, signer in signers.items():
        registry.register(device, PATIENT, signer.key)
    registry.close()
    t = now_ms() - 60_000
    messages = {d: signed(d, signers[d], 0, s) for d, s in _samples(t).items()}

    def ingest(batch: dict[str, bytes]) -> dict[tuple[str, int], int]:
        """The ledger index of each message, as the pipeline recorded it."""
        topic = settings.topic_root
        result = runtime.ingestor.pipeline.process(
            [InboundMessage(readings_topic(topic, d), m, 0, 1, 0, 0) for d, m in batch.items()],
            now_ms(),
        )
        assert result.accepted == len(batch), result
        return {(device, seq): index for device, seq, index in result.recorded}

    logged = ingest(messages)
    runtime.ingestor.pipeline.seal(now_ms())
    logged |= ingest({"p1-band": signed("p1-band", signers["p1-band"], 1, vitals(t + 1000))})
    runtime.close()
    sealed = {device: logged[(device, 0)] for device in messages}
    return Ward(settings, signers, messages, sealed, logged[("p1-band", 1)])


def _by_code(observations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["code"]["coding"][0]["code"]: o for o in observations}


def test_the_ward_logged_what_it_signed(ward: Ward) -> None:
    for device, index in [*ward.sealed.items(), ("p1-band", ward.unsealed)]:
        recorded = ward.recorded(index)
        assert recorded.reading.device_id == device
    for device, index in ward.sealed.items():
        assert ward.recorded(index).entry.body == ward.messages[device]


# (device, Observation code, LOINC codings, profile, category, UCUM unit, value)
VITALS = [
    ("p1-band", "8867-4", ["8867-4"], "heartrate", "vital-signs", "/min", 72),
    ("p1-band", "2708-6", ["2708-6", "59408-5"], "oxygensat", "vital-signs", "%", 97),
    ("p1-band", "9279-1", ["9279-1"], "resprate", "vital-signs", "/min", 16),
    ("p1-band", "8310-5", ["8310-5"], "bodytemp", "vital-signs", "Cel", 36.9),
    ("p1-cgm", "2339-0", ["2339-0"], None, "laboratory", "mg/dL", 104.5),
]


@pytest.mark.parametrize(
    ("device", "code", "codings", "profile", "category", "unit", "value"), VITALS
)
def test_each_vital_is_an_observation_of_its_profile(
    ward: Ward,
    device: str,
    code: str,
    codings: list[str],
    profile: str | None,
    category: str,
    unit: str,
    value: float,
) -> None:
    observation = _by_code(ward.observations(device))[code]
    validate(observation)
    assert check_vital_signs(observation) == []
    assert observation["status"] == "final"
    assert [c["code"] for c in observation["code"]["coding"]] == codings
    assert {c["system"] for c in observation["code"]["coding"]} == {"http://loinc.org"}
    assert observation["category"][0]["coding"][0]["code"] == category
    assert observation.get("meta", {}).get("profile") == (
        [VITAL_SIGNS_PROFILE + profile] if profile else None
    )
    quantity = observation["valueQuantity"]
    assert (quantity["system"], quantity["code"], quantity["value"]) == (UCUM, unit, value)
    assert observation["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert observation["device"] == {"reference": f"Device/{device}"}
    sample_time = ward.recorded(ward.sealed[device]).reading.samples[0].time_ms
    assert observation["effectiveDateTime"] == instant(sample_time)


def test_the_band_reading_is_four_observations_in_signed_order(ward: Ward) -> None:
    observations = ward.observations("p1-band")
    index = ward.sealed["p1-band"]
    assert [o["id"] for o in observations] == [
        f"e{index}-8867-4",
        f"e{index}-59408-5",
        f"e{index}-9279-1",
        f"e{index}-8310-5",
    ]
    assert [o["identifier"][0]["value"] for o in observations] == [
        f"p1-band/0/{code}" for code in ("8867-4", "59408-5", "9279-1", "8310-5")
    ]


def test_blood_pressure_is_one_panel_with_two_components_and_no_value(ward: Ward) -> None:
    (panel,) = ward.observations("p1-cuff")
    validate(panel)
    assert check_vital_signs(panel) == []
    assert panel["id"] == f"e{ward.sealed['p1-cuff']}-85354-9"
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert panel["meta"]["profile"] == [VITAL_SIGNS_PROFILE + "bp"]
    assert "valueQuantity" not in panel
    assert [
        (c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
        for c in panel["component"]
    ] == [("8480-6", 124, "mm[Hg]"), ("8462-4", 79, "mm[Hg]")]


def test_ids_are_stable_and_round_trip(ward: Ward) -> None:
    for device, index in ward.sealed.items():
        first, again = ward.observations(device), ward.observations(device)
        assert first == again  # derived from the ledger entry alone
        for observation in first:
            parsed = parse_observation_id(observation["id"])
            assert parsed == (index, observation["id"].split("-", 1)[1])
            assert observation_id(*parsed) == observation["id"]
            entry_index = observation["extension"][0]["valueUnsignedInt"]
            assert entry_index == index


def _reading(*samples: Sample) -> Reading:
    return Reading("dev-1", 9, samples)


def test_repeated_codes_get_their_own_ids_in_signed_order() -> None:
    t = now_ms()
    reading = _reading(*vitals(t, hr=70), *vitals(t + 1000, hr=71), *vitals(t + 2000, hr=72))
    observations = observations_of(reading, 40, PATIENT, t + 3000)
    heart = [o for o in observations if o["code"]["coding"][0]["code"] == "8867-4"]
    assert [o["id"] for o in heart] == ["e40-8867-4", "e40-8867-4.1", "e40-8867-4.2"]
    assert [o["valueQuantity"]["value"] for o in heart] == [70, 71, 72]
    assert [o["identifier"][0]["value"] for o in heart] == [
        "dev-1/9/8867-4",
        "dev-1/9/8867-4.1",
        "dev-1/9/8867-4.2",
    ]
    assert len({o["id"] for o in observations}) == 6
    for observation in observations:
        assert parse_observation_id(observation["id"]) == (40, observation["id"][4:].split(".")[0])
        validate(observation)
        assert check_vital_signs(observation) == []
    assert observation_id(40, "8867-4", 2) == "e40-8867-4.2"


def test_bp_components_pair_by_time_and_a_lone_one_says_the_other_is_absent() -> None:
    t = now_ms()
    sys_, dia = SYSTOLIC_BP, DIASTOLIC_BP
    reading = _reading(
        Sample(sys_.code, sys_.unit, 120, t),
        Sample(sys_.code, sys_.unit, 130, t + 900_000),
        Sample(dia.code, dia.unit, 85, t + 900_000),
        Sample(dia.code, dia.unit, 80, t),
        Sample(sys_.code, sys_.unit, 140, t + 1_800_000),
    )
    panels = observations_of(reading, 7, PATIENT, t)
    assert [p["id"] for p in panels] == ["e7-85354-9", "e7-85354-9.1", "e7-85354-9.2"]
    values = [[c.get("valueQuantity", {}).get("value") for c in p["component"]] for p in panels]
    assert values == [[120, 80], [130, 85], [140, None]]
    assert panels[2]["component"][1]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    for panel in panels:
        validate(panel)
        assert check_vital_signs(panel) == []


def test_a_code_the_table_does_not_know_still_maps_without_a_category() -> None:
    (observation,) = observations_of(_reading(Sample("8302-2", "cm", 172, now_ms())), 3, "p", 0)
    validate(observation)
    assert check_vital_signs(observation) == []
    assert "category" not in observation
    assert "profile" not in observation["meta"]
    assert observation["valueQuantity"]["code"] == "cm"
    assert observation["id"] == "e3-8302-2"


def test_search_codes_map_to_the_signed_sample_codes() -> None:
    assert sample_codes_matching("2708-6") == {SPO2.code}
    assert sample_codes_matching("59408-5") == {SPO2.code}
    assert sample_codes_matching("85354-9") == {SYSTOLIC_BP.code, DIASTOLIC_BP.code}
    assert sample_codes_matching("8480-6") == frozenset()  # a component, not an Observation code
    assert sample_codes_matching(HEART_RATE.code) == {HEART_RATE.code}
    assert sample_codes_matching("8302-2") == {"8302-2"}
    assert observation_code(DIASTOLIC_BP.code) == "85354-9"
    assert observation_code(HEART_RATE.code) == HEART_RATE.code


def test_the_vital_signs_table_agrees_with_what_a_vital_signs_consent_covers() -> None:
    from access.consent_state import VITAL_SIGN_CODES
    from devices.vitals import ALL_VITALS
    from fhirserver.vital_signs import VITAL_SIGNS, kind_of

    for vital in ALL_VITALS:
        assert (kind_of(vital.code).category == VITAL_SIGNS) == (vital.code in VITAL_SIGN_CODES)


# --- Provenance --------------------------------------------------------------------------------


def _provenance(ward: Ward, device: str, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    reader = LedgerReader(ward.settings.ledger_path)
    try:
        recorded = recorded_reading(reader, index)
        try:
            bundle: str | None = proof_bundle_for(reader, index).to_json()
        except NotSealed:
            bundle = None
        block = reader.blocks.latest()
        sealed_ms = block.sealed_at_ms if block is not None and bundle is not None else None
    finally:
        reader.close()
    observation = observations_of(recorded.reading, index, PATIENT, recorded.entry.logged_at_ms)[0]
    provenance = provenance_for(
        observation,
        recorded.entry.body,
        bundle,
        device,
        recorded.entry.logged_at_ms,
        sealed_ms=sealed_ms,
    )
    return observation, provenance


def test_a_sealed_readings_provenance_carries_the_message_and_a_bundle_verify_accepts(
    ward: Ward, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    observation, provenance = _provenance(ward, "p1-cuff", ward.sealed["p1-cuff"])
    validate(provenance)
    assert provenance["id"] == provenance_id(observation["id"]) == "p" + observation["id"]
    assert provenance["target"] == [{"reference": f"Observation/{observation['id']}"}]
    assert provenance["agent"][0]["who"] == {"reference": "Device/p1-cuff"}
    assert provenance["entity"][0]["what"]["identifier"]["value"] == "p1-cuff/0"
    assert {"url": LEDGER_PROOF, "valueCode": SEALED} in provenance["extension"]
    device_sig, proof_sig = provenance["signature"]

    assert device_sig["sigFormat"] == "application/cose"
    assert device_sig["type"][0]["code"] == "1.2.840.10065.1.12.1.14"  # Source Signature
    message = base64.b64decode(device_sig["data"])
    assert message == ward.messages["p1-cuff"]  # byte for byte what the device signed
    parse_sign1(message).verify(ward.signers["p1-cuff"].key)

    assert proof_sig["type"][0]["code"] == "1.2.840.10065.1.12.1.5"  # Verification Signature
    bundle = base64.b64decode(proof_sig["data"])
    key_path = ward.settings.ledger_key_path.with_suffix(".pub")
    report = verify_bundle(bundle, NoteVerifier.parse(key_path.read_text()))
    assert report.ok, report.failed()
    assert report.index == ward.sealed["p1-cuff"]
    assert report.reading is not None
    assert [s.value for s in report.reading.samples] == [
        c["valueQuantity"]["value"] for c in observation["component"]
    ]
    assert proof_sig["who"]["identifier"]["value"] == report.checkpoint.origin  # type: ignore[union-attr]

    saved = tmp_path / "from-provenance.json"
    saved.write_bytes(bundle)
    assert main(["verify", str(saved), "--ledger-key", str(key_path)]) == 0
    assert "VERIFIED" in capsys.readouterr().out


def test_an_unsealed_readings_provenance_says_so_and_has_no_proof(ward: Ward) -> None:
    observation, provenance = _provenance(ward, "p1-band", ward.unsealed)
    validate(provenance)
    assert {"url": LEDGER_PROOF, "valueCode": PENDING} in provenance["extension"]
    (device_sig,) = provenance["signature"]
    assert device_sig["sigFormat"] == "application/cose"
    assert observation["id"].startswith(f"e{ward.unsealed}-")


def test_provenance_refuses_parts_that_do_not_belong_together(ward: Ward) -> None:
    reader = LedgerReader(ward.settings.ledger_path)
    cuff = recorded_reading(reader, ward.sealed["p1-cuff"])
    cgm_bundle = proof_bundle_for(reader, ward.sealed["p1-cgm"]).to_json()
    reader.close()
    (observation,) = observations_of(cuff.reading, cuff.index, PATIENT, 0)
    with pytest.raises(ValueError, match="not p1-band's"):
        provenance_for(observation, cuff.entry.body, None, "p1-band", 0)
    with pytest.raises(ValueError, match="another message"):
        provenance_for(observation, cuff.entry.body, cgm_bundle, "p1-cuff", 0)


# --- Patient, Device, OperationOutcome ---------------------------------------------------------


def test_the_device_is_named_by_its_key_thumbprint(ward: Ward) -> None:
    record = ward.device("p1-band")
    device = device_resource(record)
    validate(device)
    assert device["id"] == "p1-band"
    assert device["status"] == "active"
    assert device["patient"] == {"reference": f"Patient/{PATIENT}"}
    kid = parse_sign1(ward.messages["p1-band"]).kid  # what the device's messages name
    identifiers = {i["system"]: i["value"] for i in device["identifier"]}
    assert identifiers["urn:ietf:rfc:3986"] == thumbprint_uri(kid)
    assert identifiers[DEVICE_KID_SYSTEM] == kid.hex()
    encoded = thumbprint_uri(kid).removeprefix("urn:ietf:params:oauth:ckt:sha-256:")
    assert base64.urlsafe_b64decode(encoded + "=") == kid == record.key.kid

    revoked = device_resource(dataclasses.replace(record, revoked_at_ms=1_700_000_000_000))
    validate(revoked)
    assert revoked["status"] == "inactive"
    assert revoked["extension"][0]["valueInstant"] == "2023-11-14T22:13:20.000Z"


def test_the_patient_resource_validates() -> None:
    patient = patient_resource(PATIENT)
    validate(patient)
    assert patient["id"] == PATIENT
    assert patient["identifier"] == [{"system": "urn:vitaltrail:patient", "value": PATIENT}]


def test_an_id_that_is_no_fhir_id_is_referenced_by_identifier() -> None:
    assert reference("Patient", "ward_3") == {
        "type": "Patient",
        "identifier": {"system": "urn:vitaltrail:patient", "value": "ward_3"},
    }
    with pytest.raises(NotAFhirId):
        patient_resource("ward_3")
    reading = Reading("band_1", 0, vitals(now_ms()))
    for observation in observations_of(reading, 5, "ward_3", now_ms()):
        validate(observation)
        assert observation["device"]["identifier"]["value"] == "band_1"


def test_operation_outcomes_validate_and_carry_the_reason_code() -> None:
    outcome = operation_outcome("error", "not-found", "no such observation", reason="no_such_id")
    validate(outcome)
    issue = outcome["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "no_such_id"
    assert "details" not in operation_outcome("error", "forbidden", "no")["issue"][0]
    with pytest.raises(ValueError, match="severity"):
        operation_outcome("bad", "invalid", "x")
    with pytest.raises(ValueError, match="issue type"):
        operation_outcome("error", "not-an-issue-type", "x")


# --- parse_observation_id: text from outside ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "e-8867-4",
        "e01-8867-4",  # leading zero: one id per entry
        "E1-8867-4",
        "e1-88674",
        "e1-8867-4.0",  # the first of a code has no suffix
        f"e1-8867-4.{MAX_SAMPLES}",
        f"e{2**64}-8867-4",
        " e1-8867-4",
        "e1-8867-4\n",
        "e\u0661-8867-4",  # a digit to str.isdigit(), not to the format
        "e1-8867-4" + "0" * 60,
    ],
)
def test_malformed_observation_ids_are_refused(text: str) -> None:
    with pytest.raises(ObservationIdError):
        parse_observation_id(text)


def test_a_non_text_id_is_refused_with_the_same_error() -> None:
    with pytest.raises(ObservationIdError):
        parse_observation_id(b"e1-8867-4")  # type: ignore[arg-type]


@FAST
@given(
    st.integers(0, 2**64 - 1),
    st.from_regex(r"[0-9]{1,7}-[0-9]", fullmatch=True),
    st.integers(0, MAX_SAMPLES - 1),
)
def test_every_id_made_parses_back(index: int, code: str, repeat: int) -> None:
    made = observation_id(index, code, repeat)
    assert len(made) <= 64
    assert parse_observation_id(made) == (index, code)


def _edited(valid: str, position: int, text: str) -> str:
    position %= len(valid) + 1
    return valid[:position] + text + valid[position:]


@FAST
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(_edited, st.just("e123-8867-4.2"), st.integers(0, 20), st.text(max_size=4)),
    )
)
def test_hostile_ids_raise_only_the_documented_error(text: str) -> None:
    try:
        index, code = parse_observation_id(text)
    except ObservationIdError as exc:
        refused: ObservationIdError | None = exc
    else:
        refused = None
        assert observation_id(index, code) in (text, text.rsplit(".", 1)[0])
    if refused is not None and caught_at_boundary(refused):
        raise AssertionError(f"only the net caught {refused.__cause__!r}") from refused
