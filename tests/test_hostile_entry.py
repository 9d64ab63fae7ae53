"""Hostile input to the ledger entry decoder and the device key statements inside entries.

LedgerEntry.decode and DeviceKeyStatement.from_entry raise only EntryError; an audit of a
ledger holding such leaves reports each one as a finding and goes on.
"""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from hypothesis import given

from ledger.appends import EntryKey, NewEntry
from ledger.audit import audit
from ledger.entries import EntryError, LedgerEntry
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import NOW_MS, corpus


@FAST
@given(hostile("ledger entry"))
def test_ledger_entry_decode_raises_only_entry_error(data: bytes) -> None:
    decode_or_documented_error("ledger entry", data)


@FAST
@given(hostile("device key statement"))
def test_device_key_statements_raise_only_entry_error(data: bytes) -> None:
    decode_or_documented_error("device key statement", data)


BODY = corpus().messages[0]
HOSTILE_ENTRIES = {
    "time of 2**64": cbor2.dumps([1, 2**64, BODY]),
    "time of 2**70": cbor2.dumps([1, 2**70, BODY]),
    "negative time": cbor2.dumps([1, -1, BODY]),
    "kind an array": cbor2.dumps([[1], NOW_MS, BODY]),
    "kind a map": cbor2.dumps([{1: 1}, NOW_MS, BODY]),
    "kind true": cbor2.dumps([True, NOW_MS, BODY]),
    "kind a bignum": cbor2.dumps([2**70, NOW_MS, BODY]),
    "kind a huge bignum": cbor2.dumps([2**20000, NOW_MS, BODY]),  # repr would exceed int limits
    "body text": cbor2.dumps([1, NOW_MS, "text"]),
    "time a float": cbor2.dumps([1, 1.0, BODY]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_ENTRIES))
def test_out_of_range_or_mistyped_fields_are_an_entry_error(name: str) -> None:
    with pytest.raises(EntryError):
        LedgerEntry.decode(HOSTILE_ENTRIES[name])


def test_the_largest_64_bit_time_is_an_entry() -> None:
    data = cbor2.dumps([1, 2**64 - 1, BODY])
    assert LedgerEntry.decode(data).logged_at_ms == 2**64 - 1


def test_audit_reports_each_hostile_leaf_and_finishes(tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path / "ledger.key", "fuzz.example/ledger")
    ledger = Ledger(tmp_path / "ledger.db", signer)
    leaves = [corpus().entries[0], *HOSTILE_ENTRIES.values()]
    ledger.append([NewEntry(EntryKey(f"x/{i}", 0), d) for i, d in enumerate(leaves)])
    ledger.seal(NOW_MS)
    ledger.close()
    reader = LedgerReader(tmp_path / "ledger.db")
    try:
        report = audit(reader, signer.verifier)
    finally:
        reader.close()
    assert report.entries == len(leaves)
    assert [(f.check, f.where) for f in report.findings if f.check == "entry"] == [
        ("entry", f"entry {i}") for i in range(1, len(leaves))
    ]
    # The good leaf is stored under a made-up key, which the key index check reports; the
    # hostile leaves' slots are not reported again.
    others = {(f.check, f.where) for f in report.findings if f.check != "entry"}
    assert {check for check, _ in others} <= {"key index"}
    assert all("entry 0" in f.detail for f in report.findings if f.check != "entry")
