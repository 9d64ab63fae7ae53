"""Hostile bytes into every decoder of consents and patient keys: only its own error escapes,
and always for a reason of its own (never only the boundary's net)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from access.consent import (
    ConsentStatement,
    RecordedConsent,
    SignedConsent,
    decode_consent,
    sign_consent,
)
from access.consent_store import ConsentStore
from access.errors import ConsentError, ConsentRefused, PatientKeyError
from access.journal import Journal
from access.patient_keys import PatientKeyStatement
from devices.cose import sign1
from ledger.entries import EntryKind
from tests.access_helpers import NOW, PATIENT_KEY, grant
from tests.access_hostile import every_node_replaced, hostile_cbor, returns_or_raises_only
from tests.hostile import FAST

STATEMENTS = (
    grant(0).encode(),
    grant(3, grantee=grant(0).grantee, end_ms=None, data=["8867-4"]).encode(),
    ConsentStatement.withdrawal("p-17", 1, NOW, ends=0).encode(),
)
SIGNED = tuple(sign_consent(PATIENT_KEY, ConsentStatement.decode(s)).message for s in STATEMENTS)
RECORDED = tuple(
    RecordedConsent(ConsentStatement.decode(s), "u-nurse-3", "clinician", "by phone").body
    for s in STATEMENTS
)
KEYS = (
    PatientKeyStatement(EntryKind.PATIENT_KEY_REGISTERED, "p-17", PATIENT_KEY.key).body(),
    cbor2.dumps({"patient": "p-17", "key": b"\x00" * 32}, canonical=True),
)


@FAST
@given(hostile_cbor("consent statement", STATEMENTS))
def test_consent_statements_raise_only_consent_error(data: bytes) -> None:
    returns_or_raises_only(ConsentStatement.decode, ConsentError, data)


@FAST
@given(hostile_cbor("signed consent", SIGNED))
def test_signed_consents_raise_only_consent_error(data: bytes) -> None:
    returns_or_raises_only(SignedConsent.decode, ConsentError, data)


@FAST
@given(hostile_cbor("statement inside a signature", STATEMENTS))
def test_hostile_statements_the_patient_really_signed_raise_only_consent_error(
    payload: bytes,
) -> None:
    returns_or_raises_only(SignedConsent.decode, ConsentError, sign1(PATIENT_KEY, payload))


@FAST
@given(hostile_cbor("recorded consent", RECORDED))
def test_recorded_consents_raise_only_consent_error(data: bytes) -> None:
    returns_or_raises_only(RecordedConsent.decode, ConsentError, data)


@FAST
@given(st.sampled_from(list(EntryKind)), hostile_cbor("consent entry", SIGNED + RECORDED))
def test_consent_entries_of_any_kind_raise_only_consent_error(kind: EntryKind, data: bytes) -> None:
    returns_or_raises_only(lambda b: decode_consent(kind, b), ConsentError, data)


@FAST
@given(st.sampled_from(list(EntryKind)), hostile_cbor("patient key statement", KEYS))
def test_patient_key_statements_raise_only_patient_key_error(kind: EntryKind, data: bytes) -> None:
    returns_or_raises_only(lambda b: PatientKeyStatement.decode(kind, b), PatientKeyError, data)


def test_the_store_answers_hostile_submissions_with_a_refusal(tmp_path: Path) -> None:
    store = ConsentStore(Journal(tmp_path / "j.sqlite"))
    store.keys.register("p-17", PATIENT_KEY.key, NOW)

    @FAST
    @given(hostile_cbor("signed consent", SIGNED))
    def submit(data: bytes) -> None:
        with contextlib.suppress(ConsentRefused):
            store.record_signed(data, NOW)

    submit()
    assert sum(store.refused.values()) > 0


def _refused_or_exact(decode: Callable[[bytes], object], seeds: tuple[bytes, ...]) -> int:
    refused = 0
    for seed in seeds:
        for data in every_node_replaced(seed):
            outcome = returns_or_raises_only(decode, ConsentError, data)
            if isinstance(outcome, ConsentError):
                refused += 1
            else:
                assert cbor2.loads(data) == cbor2.loads(
                    cbor2.dumps(cbor2.loads(data), canonical=True)
                )
    return refused


def test_every_field_of_a_statement_replaced_by_a_hostile_value() -> None:
    assert _refused_or_exact(ConsentStatement.decode, STATEMENTS) > 300


def test_every_field_of_a_recorded_consent_replaced_by_a_hostile_value() -> None:
    assert _refused_or_exact(RecordedConsent.decode, RECORDED) > 50


def test_every_field_of_a_signed_statement_replaced_by_a_hostile_value() -> None:
    def signed(payload: bytes) -> object:
        return SignedConsent.decode(sign1(PATIENT_KEY, payload))

    assert _refused_or_exact(signed, STATEMENTS) > 300


def test_every_field_of_a_patient_key_replaced_by_a_hostile_value() -> None:
    for seed in KEYS:
        for data in every_node_replaced(seed):
            outcome = returns_or_raises_only(
                lambda b: PatientKeyStatement.decode(EntryKind.PATIENT_KEY_REGISTERED, b),
                PatientKeyError,
                data,
            )
            assert isinstance(outcome, PatientKeyError) or cbor2.loads(data)["key"] == b"\x00" * 32
