"""Typed ledger entries: what a leaf of the log holds.

A leaf's data is the deterministic CBOR array ``[kind, logged_at_ms, body]``. The kind says
how to read the body (a reading's body is the device's COSE_Sign1 message, byte for byte);
``logged_at_ms`` is when the ledger accepted it, committed by the tree like everything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

import cbor2

from devices.cbor_head import bstr, uint
from ledger.appends import EntryKey


class EntryKind(enum.IntEnum):
    READING = 1  # body: the device's COSE_Sign1 message
    DEVICE_REGISTERED = 2  # body: see ledger.device_keys
    DEVICE_REVOKED = 3
    # Consent and access events come later.


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
    def decode(cls, data: bytes) -> Self:
        try:
            obj = cbor2.loads(data)
        except Exception as exc:
            raise EntryError(f"entry is not valid CBOR: {exc}") from exc
        if not (isinstance(obj, list) and len(obj) == 3):
            raise EntryError("an entry is [kind, logged_at_ms, body]")
        kind, logged_at, body = obj
        if kind not in EntryKind._value2member_map_:
            raise EntryError(f"unknown entry kind {kind!r}")
        if not isinstance(logged_at, int) or isinstance(logged_at, bool) or logged_at < 0:
            raise EntryError("logged_at_ms must be a non-negative integer")
        if not isinstance(body, bytes):
            raise EntryError("an entry body is a byte string")
        entry = cls(EntryKind(kind), logged_at, body)
        if entry.encode() != data:
            raise EntryError("entry is not deterministically encoded")
        return entry


def same_submission(recorded: bytes, submitted: bytes) -> bool:
    """Two leaves hold the same submission when kind and body agree: a device's redelivered
    message is logged again at another time, but it is the same reading."""
    a, b = LedgerEntry.decode(recorded), LedgerEntry.decode(submitted)
    return (a.kind, a.body) == (b.kind, b.body)


def reading_key(device_id: str, seq: int) -> EntryKey:
    """The ledger's uniqueness key for a reading: one entry per (device, sequence number)."""
    return EntryKey(f"reading/{device_id}", seq)
