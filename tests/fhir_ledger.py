"""A ledger written directly (no broker, no store): device keys and signed readings, for the
FHIR index and search tests, on SQLite or PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from devices.keys import DeviceSigner
from devices.reading import Sample
from devices.vitals import DIASTOLIC_BP, HEART_RATE, SPO2, SYSTOLIC_BP
from ledger.appends import NewEntry
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from tests.stack import signed

LOG_SIGNER = NoteSigner.generate("test.example/fhir")
T0 = 1_763_700_000_000  # 2025-11-21T04:40:00Z


class LedgerWriter:
    """Appends key registrations and readings, as ingest would have logged them."""

    def __init__(self, location: Path | str, signer: NoteSigner = LOG_SIGNER) -> None:
        self.ledger = Ledger(location, signer)
        self.seqs: dict[str, int] = {}

    def register(self, device_id: str, patient_id: str, signer: DeviceSigner) -> None:
        statement = DeviceKeyStatement(
            EntryKind.DEVICE_REGISTERED, device_id, signer.key, patient_id
        )
        self.ledger.append([statement.entry(T0)])

    def reading(self, device_id: str, signer: DeviceSigner, samples: Sequence[Sample]) -> int:
        """Log one reading; its entry index."""
        seq = self.seqs.get(device_id, 0)
        self.seqs[device_id] = seq + 1
        data = LedgerEntry(EntryKind.READING, T0, signed(device_id, signer, seq, samples)).encode()
        (result,) = self.ledger.append([NewEntry(reading_key(device_id, seq), data)])
        return result.index

    def raw(self, key_group: str, body: bytes) -> int:
        """Log a reading entry whose body is whatever was given (an old, invalid record)."""
        data = LedgerEntry(EntryKind.READING, T0, body).encode()
        (result,) = self.ledger.append([NewEntry(reading_key(key_group, 0), data)])
        return result.index

    def seal(self, now_ms: int = T0) -> None:
        self.ledger.seal(now_ms)

    def close(self) -> None:
        self.ledger.close()


def heart_rate(t: int, value: float = 72) -> tuple[Sample, ...]:
    return (Sample(HEART_RATE.code, HEART_RATE.unit, value, t),)


def vitals(t: int, hr: float = 72, spo2: float = 97) -> tuple[Sample, ...]:
    return (
        Sample(HEART_RATE.code, HEART_RATE.unit, hr, t),
        Sample(SPO2.code, SPO2.unit, spo2, t),
    )


def blood_pressure(t: int, systolic: float = 120, diastolic: float = 80) -> tuple[Sample, ...]:
    return (
        Sample(SYSTOLIC_BP.code, SYSTOLIC_BP.unit, systolic, t),
        Sample(DIASTOLIC_BP.code, DIASTOLIC_BP.unit, diastolic, t),
    )
