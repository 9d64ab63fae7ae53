"""Device keys in the log: a registration and a revocation are ledger entries like readings.

A reading is only as good as the key that signed it, so the key's history is in the same
tree: a proof bundle carries the key's registration (and its revocation, if there is one)
with their own inclusion proofs, and the verifier rejects a reading logged before its key's
registration or after its revocation. The body is deterministic CBOR::

    {"device": "ward3-bed12-band", "key": h'<32-byte Ed25519 public key>', "patient": "p-17"}

(a revocation has no ``"patient"``). Each key has at most one of each, under the ledger keys
``("device-key/<kid hex>", 0)`` and ``("device-key/<kid hex>", 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import cbor2

from devices.boundary import decoder
from devices.keys import PUBLIC_KEY_SIZE, DeviceKey
from devices.reading import is_valid_device_id
from ledger.appends import EntryKey, NewEntry
from ledger.entries import EntryError, EntryKind, LedgerEntry

REGISTERED, REVOKED = 0, 1


def key_entry_key(kid: bytes, event: int) -> EntryKey:
    return EntryKey(f"device-key/{kid.hex()}", event)


@dataclass(frozen=True)
class DeviceKeyStatement:
    """What the ledger says about one device key: registered to a patient, or revoked."""

    kind: EntryKind  # DEVICE_REGISTERED or DEVICE_REVOKED
    device_id: str
    key: DeviceKey
    patient_id: str | None  # registrations only

    def body(self) -> bytes:
        doc: dict[str, object] = {"device": self.device_id, "key": self.key.public_bytes}
        if self.kind is EntryKind.DEVICE_REGISTERED:
            doc["patient"] = self.patient_id
        return bytes(cbor2.dumps(doc, canonical=True))

    def entry(self, logged_at_ms: int) -> NewEntry:
        event = REGISTERED if self.kind is EntryKind.DEVICE_REGISTERED else REVOKED
        data = LedgerEntry(self.kind, logged_at_ms, self.body()).encode()
        return NewEntry(key_entry_key(self.key.kid, event), data)

    @classmethod
    @decoder(EntryError, "the device key statement")
    def from_entry(cls, entry: LedgerEntry) -> Self:
        """Parse a registration or revocation entry; raise :class:`EntryError` if it is not one."""
        if entry.kind not in (EntryKind.DEVICE_REGISTERED, EntryKind.DEVICE_REVOKED):
            raise EntryError(f"entry is a {entry.kind.name.lower()}, not a device key statement")
        try:
            doc = cbor2.loads(entry.body)
        except Exception as exc:
            raise EntryError(f"device key statement is not CBOR ({type(exc).__name__})") from exc
        registration = entry.kind is EntryKind.DEVICE_REGISTERED
        fields = {"device", "key", "patient"} if registration else {"device", "key"}
        if not isinstance(doc, dict) or set(doc) != fields:
            raise EntryError(f"a device key statement is a map of {sorted(fields)}")
        device, key, patient = doc["device"], doc["key"], doc.get("patient")
        if not isinstance(device, str) or not is_valid_device_id(device):
            raise EntryError("device key statement names no valid device")
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
            raise EntryError(f"device key must be {PUBLIC_KEY_SIZE} bytes")
        if registration and (not isinstance(patient, str) or not is_valid_device_id(patient)):
            raise EntryError("a registration names the patient the device is bound to")
        statement = cls(entry.kind, device, DeviceKey(key), patient)
        if statement.body() != entry.body:
            raise EntryError("device key statement is not deterministically encoded")
        return statement
