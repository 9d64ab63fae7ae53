"""Consent statements: their one encoding, the store's decisions and refusals, the FHIR export.

The store is the API's view: a withdrawal holds for the very next request, and every refusal
has a reason code that is counted.
"""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from fhir.resources.R4B.consent import Consent as FhirConsent

from access.consent import (
    ConsentStatement,
    Grantee,
    RecordedConsent,
    SignedConsent,
    decode_consent,
    sign_consent,
)
from access.consent_store import ConsentStore
from access.errors import ConsentError, ConsentRefused
from access.fhir import LEDGER_INDEX, RECORDED_BY, WITHDRAWS, consent_resource, consent_resources
from devices.cose import encode_sign1, parse_sign1
from ledger.entries import EntryKind
from tests.access_helpers import APP, DAY, NOW, PATIENT_KEY, grant, journal, signed_grant, signer


@pytest.fixture
def store(tmp_path: Path) -> ConsentStore:
    s = ConsentStore(journal(tmp_path))
    s.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    return s


def test_a_grant_and_a_withdrawal_have_one_deterministic_encoding() -> None:
    for statement in (grant(0), ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)):
        data = statement.encode()
        assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
        assert ConsentStatement.decode(data) == statement
    assert grant(0, data=["8867-4", "vital-signs", "8867-4"]).data == ("8867-4", "vital-signs")


def _grant_doc() -> dict[str, object]:
    return dict(cbor2.loads(grant(0).encode()))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"patient": "p 17"}, "patient"),
        ({"seq": -1}, "seq"),
        ({"status": "draft"}, "status"),
        ({"grantee": ["org", "x"]}, "grantee"),
        ({"grantee": ["app", "has space"]}, "grantee"),
        ({"actions": ["read"]}, "actions"),
        ({"data": ["vital-signs", "8867-4"]}, "data"),  # not sorted: a second encoding
        ({"data": ["laboratory"]}, "data"),
        ({"purpose": []}, "purpose"),
        ({"purpose": ["treat"]}, "purpose"),
        ({"end": NOW - 2 * DAY}, "period"),
        ({"extra": 1}, "keys"),
        ({"ends": 0}, "grant"),
    ],
)
def test_a_malformed_statement_is_a_consent_error(change: dict[str, object], why: str) -> None:
    doc = _grant_doc() | change
    with pytest.raises(ConsentError):
        ConsentStatement.decode(cbor2.dumps(doc, canonical=True))


def test_a_withdrawal_ends_an_earlier_grant_only() -> None:
    with pytest.raises(ConsentError, match="earlier grant"):
        ConsentStatement.withdrawal("p-17", 1, NOW, ends=1)


def test_a_statement_in_another_encoding_is_refused() -> None:
    data = grant(0).encode()
    indefinite = b"\xbf" + data[1:] + b"\xff"  # the same map with an indefinite length
    assert cbor2.loads(indefinite) == cbor2.loads(data)
    with pytest.raises(ConsentError, match="deterministically"):
        ConsentStatement.decode(indefinite)


def test_the_patient_signs_with_their_own_key() -> None:
    signed = signed_grant()
    again = SignedConsent.decode(signed.message)
    assert again.statement == grant(0)
    again.verify(PATIENT_KEY.key)
    with pytest.raises(ConsentError, match="signature"):
        again.verify(signer("somebody else").key)


def test_a_grant_is_in_force_for_what_it_names(store: ConsentStore) -> None:
    store.record_signed(signed_grant(data=["2339-0", "vital-signs"]).message, NOW - DAY)
    allowed = store.in_force("p-17", APP, "vital-signs", "TREAT", NOW)
    assert allowed == grant(0, data=["2339-0", "vital-signs"])
    assert store.in_force("p-17", APP, "8867-4", "PATRQT", NOW)  # a vital sign: covered
    assert store.in_force("p-17", APP, "2339-0", "TREAT", NOW)  # glucose, granted by code
    refused = [
        ("p-18", APP, "vital-signs", "TREAT", NOW),  # another patient
        ("p-17", Grantee("app", "other"), "vital-signs", "TREAT", NOW),  # another app
        ("p-17", Grantee("user", APP.id), "vital-signs", "TREAT", NOW),  # a user of that name
        ("p-17", APP, "vital-signs", "HRESCH", NOW),  # another purpose
        ("p-17", APP, "vital-signs", "TREAT", NOW - 2 * DAY),  # before the period
        ("p-17", APP, "vital-signs", "TREAT", NOW + 30 * DAY),  # at its end
    ]
    for request in refused:
        assert store.in_force(*request) is None, request


def test_glucose_is_not_a_vital_sign(store: ConsentStore) -> None:
    store.record_signed(signed_grant().message, NOW - DAY)
    assert store.in_force("p-17", APP, "2339-0", "TREAT", NOW) is None


def test_a_withdrawal_holds_for_the_next_request(store: ConsentStore) -> None:
    store.record_signed(signed_grant().message, NOW - DAY)
    assert store.in_force("p-17", APP, "vital-signs", "TREAT", NOW)
    withdrawal = sign_consent(PATIENT_KEY, ConsentStatement.withdrawal("p-17", 1, NOW, ends=0))
    store.record_signed(withdrawal.message, NOW)
    assert store.in_force("p-17", APP, "vital-signs", "TREAT", NOW) is None
    assert store.next_seq("p-17") == 2
    assert [c.statement.status for _, c in store.statements("p-17")] == ["active", "inactive"]


def test_a_redelivered_statement_is_the_same_record(store: ConsentStore) -> None:
    first = store.record_signed(signed_grant().message, NOW - DAY)
    again = store.record_signed(signed_grant().message, NOW)
    assert again == first
    assert len(store.statements("p-17")) == 1


def test_staff_record_a_consent_naming_who_and_why(store: ConsentStore) -> None:
    row = store.record_for_patient(grant(0), "u-nurse-3", "clinician", "asked by phone", NOW)
    assert row.kind is EntryKind.CONSENT_RECORDED
    recorded = decode_consent(row.kind, row.body)
    assert recorded == RecordedConsent(grant(0), "u-nurse-3", "clinician", "asked by phone")
    assert store.in_force("p-17", APP, "vital-signs", "TREAT", NOW)


def _bad_signature() -> bytes:
    message = parse_sign1(signed_grant().message)
    return encode_sign1(message.kid, message.payload, bytes(64))


REFUSALS = {
    "malformed": lambda s: s.record_signed(b"\xa0", NOW),
    "unknown-key": lambda s: s.record_signed(
        sign_consent(signer("stranger"), grant()).message, NOW
    ),
    "wrong-patient": lambda s: s.record_signed(signed_grant(patient="p-18").message, NOW),
    "bad-signature": lambda s: s.record_signed(_bad_signature(), NOW),
    "future-time": lambda s: s.record_signed(signed_grant(time_ms=NOW + DAY).message, NOW),
    "invalid-recorder": lambda s: s.record_for_patient(grant(), "u-1", "clinician", " ", NOW),
    "no-such-grant": lambda s: s.record_signed(
        sign_consent(PATIENT_KEY, ConsentStatement.withdrawal("p-17", 5, NOW, ends=4)).message,
        NOW,
    ),
}


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_each_refusal_has_a_reason_code_and_a_count(store: ConsentStore, reason: str) -> None:
    with pytest.raises(ConsentRefused) as refused:
        REFUSALS[reason](store)
    assert refused.value.reason == reason
    assert store.refused == {reason: 1}
    assert store.statements("p-17") == []


def test_a_revoked_key_signs_nothing_more(store: ConsentStore) -> None:
    store.keys.revoke("p-17", PATIENT_KEY.key, NOW - DAY)
    with pytest.raises(ConsentRefused) as refused:
        store.record_signed(signed_grant().message, NOW)
    assert refused.value.reason == "revoked-key"


def test_a_taken_number_and_a_second_withdrawal_are_refused(store: ConsentStore) -> None:
    store.record_signed(signed_grant().message, NOW - DAY)
    with pytest.raises(ConsentRefused) as taken:
        store.record_signed(signed_grant(purpose=["TREAT"]).message, NOW)
    assert taken.value.reason == "seq-taken"
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    store.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    with pytest.raises(ConsentRefused) as twice:
        store.record_for_patient(
            ConsentStatement.withdrawal("p-17", 2, NOW, ends=0), "u-1", "clinician", "again", NOW
        )
    assert twice.value.reason == "already-withdrawn"
    assert store.refused == {"seq-taken": 1, "already-withdrawn": 1}


def _valid_r4(resource: dict[str, object]) -> FhirConsent:
    return FhirConsent.model_validate(resource)


def test_a_signed_grant_exports_as_an_r4_consent() -> None:
    resource = consent_resource(signed_grant(), ledger_index=12)
    model = _valid_r4(resource)
    assert model.status == "active"
    assert resource["scope"]["coding"][0]["code"] == "patient-privacy"
    assert resource["category"][0]["coding"][0] == {"system": "http://loinc.org", "code": "59284-0"}
    provision = resource["provision"]
    assert provision["type"] == "permit"
    assert provision["actor"][0]["role"]["coding"][0]["code"] == "IRCP"
    assert provision["actor"][0]["reference"]["identifier"]["value"] == "telemed-1"
    assert [c["coding"][0]["code"] for c in provision["action"]] == ["access"]
    assert [p["code"] for p in provision["purpose"]] == ["PATRQT", "TREAT"]
    assert provision["period"]["start"] == "2025-11-20T04:40:00.000Z"
    assert resource["extension"] == [{"url": LEDGER_INDEX, "valueUnsignedInt": 12}]
    assert resource["sourceAttachment"]["contentType"] == "application/cose"


def test_a_recorded_withdrawal_exports_as_an_inactive_consent() -> None:
    end = RecordedConsent(
        ConsentStatement.withdrawal("p-17", 1, NOW, ends=0), "u-nurse-3", "clinician", "phone"
    )
    resource = consent_resource(end, 13, grant=grant(0))
    assert _valid_r4(resource).status == "inactive"
    urls = [e["url"] for e in resource["extension"]]
    assert urls == [LEDGER_INDEX, WITHDRAWS, RECORDED_BY]
    assert resource["extension"][1]["valueIdentifier"]["value"] == "p-17/0"
    assert resource["provision"]["actor"][0]["reference"]["identifier"]["value"] == "telemed-1"
    assert "sourceAttachment" not in resource
    assert _valid_r4(consent_resource(signed_grant(), withdrawn=True)).status == "inactive"


def test_a_key_speaks_for_one_patient(store: ConsentStore) -> None:
    again = store.keys.register("p-17", PATIENT_KEY.key, NOW)  # the same registration
    assert again.seq == 1
    with pytest.raises(ConsentRefused) as taken:
        store.keys.register("p-18", PATIENT_KEY.key, NOW)
    with pytest.raises(ConsentRefused) as unknown:
        store.keys.revoke("p-18", PATIENT_KEY.key, NOW)
    with pytest.raises(ConsentRefused) as invalid:
        store.keys.register("p 18", signer("other").key, NOW)
    assert (taken.value.reason, unknown.value.reason) == ("key-taken", "unknown-key")
    assert invalid.value.reason == "invalid-patient"
    assert store.refused == {"key-taken": 1, "unknown-key": 1, "invalid-patient": 1}
    assert [k.patient_id for k in store.keys.of_patient("p-17")] == ["p-17"]
    assert store.keys.of_patient("p-18") == []


def test_a_patients_consents_export_with_todays_status(store: ConsentStore) -> None:
    store.record_signed(signed_grant().message, NOW - DAY)
    store.record_signed(signed_grant(1, purpose=["PATRQT"]).message, NOW - DAY)
    end = ConsentStatement.withdrawal("p-17", 2, NOW, ends=0)
    store.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    sealed = {grant(0).ledger_key: 5}
    resources = consent_resources([c for _, c in store.statements("p-17")], index_of=sealed.get)
    assert [_valid_r4(r).status for r in resources] == ["inactive", "active", "inactive"]
    assert resources[0]["extension"] == [{"url": LEDGER_INDEX, "valueUnsignedInt": 5}]
    assert "extension" not in resources[1]  # not sealed yet
    assert resources[2]["provision"] == resources[0]["provision"]
