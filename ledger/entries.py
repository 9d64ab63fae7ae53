"""Typed ledger entries: what a leaf of the log holds.

A leaf's data is the deterministic CBOR array ``[kind, logged_at_ms, body]``. The kind says
how to read the body (a reading's body is the device's COSE_Sign1 message, byte for byte);
``logged_at_ms`` is when the ledger accepted it, committed by the tree like everything else.
Kind and time are CBOR unsigned integers (at most 64 bits); the body is a byte string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

import cbor2

from devices.boundary import decoder
from devices.cbor_head import MAX_ARGUMENT, bstr, uint
from ledger.appends import EntryKey


class EntryKind(enum.IntEnum):
    READING = 1  # body: the device's COSE_Sign1 message
    DEVICE_REGISTERED = 2  # body: see ledger.device_keys
    DEVICE_REVOKED = 3
    # What these mean lives in the package that owns them (access/, see docs/formats.md):
    PATIENT_KEY_REGISTERED = 4  # body: see access.patient_keys
    PATIENT_KEY_REVOKED = 5
    CONSENT_SIGNED = 6  # body: the patient's COSE_Sign1 over a consent statement (access.consent)
    CONSENT_RECORDED = 7  # body: a statement recorded by staff on the patient's behalf
    ACCESS = 8  # body: an access event of the read side's trail (access.trail)
    DIRECTORY_CHANGE = 9  # body: a change to users or care teams (access.directory_changes)


class EntryError(Exception):
    """Leaf data that is not a well-formed ledger entry."""


@dataclass(frozen=True)
class LedgerEntry:
    kind: EntryKind
    logged_at_ms: int
    body: bytes

    def encode(self) -> bytes:
        """Deterministic CBOR ``[kind, logged_at_ms, body]``, written directly (the ingest hot path)."""
        return b"\x83" + uint(int(self.kind)) + uint(self.logged_at_ms) + bstr(self.body)

    @classmethod
    @decoder(EntryError, "the ledger entry")
    def decode(cls, data: bytes) -> Self:
        """Parse leaf data; raise :class:`EntryError` unless it is a deterministically encoded
        entry of a known kind."""
        try:
            obj = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types for malformed input
            raise EntryError(f"entry is not valid CBOR ({type(exc).__name__})") from exc
        if not (isinstance(obj, list) and len(obj) == 3):
            raise EntryError("an entry is [kind, logged_at_ms, body]")
        kind, logged_at, body = obj
        if not _is_uint(kind) or kind not in EntryKind._value2member_map_:
            raise EntryError(f"the entry kind is not one of {[int(k) for k in EntryKind]}")
        if not _is_uint(logged_at):
            raise EntryError("logged_at_ms must be an integer from 0 to 2**64 - 1")
        if not isinstance(body, bytes):
            raise EntryError("an entry body is a byte string")
        entry = cls(EntryKind(kind), logged_at, body)
        if entry.encode() != data:
            raise EntryError("entry is not deterministically encoded")
        return entry


def _is_uint(value: object) -> bool:
    """A CBOR unsigned integer as decoded: an int (not a bool) in [0, 2**64 - 1]."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ARGUMENT


def same_submission(recorded: bytes, submitted: bytes) -> bool:
    """Two leaves hold the same submission when kind and body agree: a device's redelivered
    message is logged again at another time, but it is the same reading."""
    a, b = LedgerEntry.decode(recorded), LedgerEntry.decode(submitted)
    return (a.kind, a.body) == (b.kind, b.body)


def reading_key(device_id: str, seq: int) -> EntryKey:
    """The ledger's uniqueness key for a reading: one entry per (device, sequence number)."""
    return EntryKey(f"reading/{device_id}", seq)
