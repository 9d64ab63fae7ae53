"""Device key statements: the entries that put a key's registration and revocation in the log."""

from __future__ import annotations

import cbor2
import pytest

from devices.keys import DeviceSigner
from ledger.device_keys import REGISTERED, REVOKED, DeviceKeyStatement, key_entry_key
from ledger.entries import EntryError, EntryKind, LedgerEntry

KEY = DeviceSigner.generate().key


def test_statements_round_trip_under_their_keys() -> None:
    registered = DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, "band-1", KEY, "patient-1")
    revoked = DeviceKeyStatement(EntryKind.DEVICE_REVOKED, "band-1", KEY, None)
    for statement, event in [(registered, REGISTERED), (revoked, REVOKED)]:
        entry = statement.entry(1_763_700_000_000)
        assert entry.key == key_entry_key(KEY.kid, event)
        assert DeviceKeyStatement.from_entry(LedgerEntry.decode(entry.data)) == statement


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (EntryKind.DEVICE_REGISTERED, {"device": "band-1", "key": KEY.public_bytes}),
        (EntryKind.DEVICE_REVOKED, {"device": "band-1", "key": KEY.public_bytes, "patient": "p"}),
        (EntryKind.DEVICE_REGISTERED, {"device": "x y", "key": KEY.public_bytes, "patient": "p"}),
        (EntryKind.DEVICE_REGISTERED, {"device": "band-1", "key": b"short", "patient": "p"}),
        (EntryKind.DEVICE_REGISTERED, {"device": "band-1", "key": KEY.public_bytes, "patient": 7}),
        (EntryKind.DEVICE_REVOKED, ["band-1", KEY.public_bytes]),
        (EntryKind.READING, {"device": "band-1", "key": KEY.public_bytes}),
    ],
)
def test_malformed_statements_are_refused(kind: EntryKind, body: object) -> None:
    with pytest.raises(EntryError):
        DeviceKeyStatement.from_entry(LedgerEntry(kind, 0, cbor2.dumps(body, canonical=True)))


def test_a_non_deterministic_encoding_is_refused() -> None:
    body = cbor2.dumps({"device": "band-1", "key": KEY.public_bytes})  # not length-first order
    with pytest.raises(EntryError, match="deterministic"):
        DeviceKeyStatement.from_entry(LedgerEntry(EntryKind.DEVICE_REVOKED, 0, body))
