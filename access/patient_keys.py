"""Patients' keys in the log: what makes a patient's consent unforgeable by the operator.

A patient who gives consent signs it with their own Ed25519 key, as a device signs a reading.
The key is registered (and may be revoked) by a ledger entry, like a device key
(ledger.device_keys), so a verifier knows which key spoke for which patient at every point of
the log. The body is deterministic CBOR, the same for both kinds::

    {"patient": "p-17", "key": h'<32-byte Ed25519 public key>'}

under the ledger keys ``("patient-key/<kid hex>", 0)`` (registered, kind 4) and
``("patient-key/<kid hex>", 1)`` (revoked, kind 5); the kid is the key's RFC 9679 thumbprint,
the COSE kid of what it signs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Self

from access.errors import ConsentRefused, JournalConflict, PatientKeyError
from access.fields import dump_map, is_patient_id, load_map
from access.journal import Journal, Row
from devices.boundary import decoder
from devices.keys import PUBLIC_KEY_SIZE, DeviceKey
from ledger.appends import EntryKey
from ledger.entries import EntryKind, LedgerEntry

REGISTERED, REVOKED = 0, 1
KINDS = (EntryKind.PATIENT_KEY_REGISTERED, EntryKind.PATIENT_KEY_REVOKED)
_KEYS = frozenset({"patient", "key"})


def patient_key_entry_key(kid: bytes, event: int) -> EntryKey:
    return EntryKey(f"patient-key/{kid.hex()}", event)


@dataclass(frozen=True)
class PatientKeyStatement:
    """A patient's key, registered or revoked."""

    kind: EntryKind  # PATIENT_KEY_REGISTERED or PATIENT_KEY_REVOKED
    patient_id: str
    key: DeviceKey

    @property
    def ledger_key(self) -> EntryKey:
        event = REGISTERED if self.kind is EntryKind.PATIENT_KEY_REGISTERED else REVOKED
        return patient_key_entry_key(self.key.kid, event)

    def body(self) -> bytes:
        return dump_map({"patient": self.patient_id, "key": self.key.public_bytes})

    @classmethod
    @decoder(PatientKeyError, "the patient key statement")
    def decode(cls, kind: EntryKind, body: bytes) -> Self:
        """Parse a body of ``kind``; raise :class:`PatientKeyError` unless it is one."""
        if kind not in KINDS:
            raise PatientKeyError(f"a {kind.name.lower()} entry is not a patient key statement")
        doc = load_map(body, _KEYS, frozenset())
        if isinstance(doc, str):
            raise PatientKeyError(f"a patient key statement is {doc}")
        patient, key = doc["patient"], doc["key"]
        if not is_patient_id(patient):
            raise PatientKeyError("a patient key statement names no valid patient")
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
            raise PatientKeyError(f"a patient key is {PUBLIC_KEY_SIZE} bytes")
        statement = cls(kind, patient, DeviceKey(key))
        if statement.body() != body:
            raise PatientKeyError("patient key statement is not deterministically encoded")
        return statement

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> Self:
        return cls.decode(entry.kind, entry.body)


class PatientKeys:
    """Patients' keys as the journal records them (what the consent store verifies against).
    Refusals: ``invalid-patient``, ``key-taken`` (registered to another patient),
    ``unknown-key`` (a revocation of a key the patient does not have)."""

    def __init__(self, journal: Journal, refused: Counter[str] | None = None) -> None:
        self._journal = journal
        self.refused: Counter[str] = Counter() if refused is None else refused

    def _refuse(self, reason: str, detail: str) -> ConsentRefused:
        self.refused[reason] += 1
        return ConsentRefused(reason, detail)

    def register(self, patient_id: str, key: DeviceKey, now_ms: int) -> Row:
        """Record that ``key`` speaks for ``patient_id`` (once; a key serves one patient)."""
        if not is_patient_id(patient_id):
            raise self._refuse("invalid-patient", "not a valid patient id")
        statement = PatientKeyStatement(EntryKind.PATIENT_KEY_REGISTERED, patient_id, key)
        try:
            return self._journal.append(lambda _: _record(statement), now_ms)
        except JournalConflict as exc:
            raise self._refuse("key-taken", "this key is registered to another patient") from exc

    def revoke(self, patient_id: str, key: DeviceKey, now_ms: int) -> Row:
        if self.patient_of(key.kid) != patient_id:
            raise self._refuse("unknown-key", "the key is not registered to this patient")
        statement = PatientKeyStatement(EntryKind.PATIENT_KEY_REVOKED, patient_id, key)
        return self._journal.append(lambda _: _record(statement), now_ms)

    def patient_of(self, kid: bytes) -> str | None:
        """The patient a key was registered to (revoked or not), or None."""
        row = self._journal.by_key(patient_key_entry_key(kid, REGISTERED))
        return None if row is None else PatientKeyStatement.decode(row.kind, row.body).patient_id

    def active(self, kid: bytes) -> PatientKeyStatement | None:
        """The registration of an unrevoked key, or None."""
        row = self._journal.by_key(patient_key_entry_key(kid, REGISTERED))
        if row is None or self._journal.by_key(patient_key_entry_key(kid, REVOKED)) is not None:
            return None
        return PatientKeyStatement.decode(row.kind, row.body)

    def of_patient(self, patient_id: str) -> list[PatientKeyStatement]:
        """The patient's key statements, in journal order."""
        rows = self._journal.of_kinds(KINDS, patient_id)
        return [PatientKeyStatement.decode(row.kind, row.body) for row in rows]


def _record(
    statement: PatientKeyStatement,
) -> tuple[EntryKind, EntryKey, bytes, tuple[str, ...]]:
    return statement.kind, statement.ledger_key, statement.body(), (statement.patient_id,)
