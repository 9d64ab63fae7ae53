"""The server-side device registry: which key belongs to which device and patient.

SQLite, one row per device. A device is registered with its public key and the patient it
is bound to; it can be revoked, after which its readings are refused. Lookups go by kid,
because a COSE message names its key, not its device.

Every registration and revocation is also a numbered :class:`KeyEvent`, so the ingestor can
copy them into the ledger in order (:meth:`DeviceRegistry.events_after`): the registry
decides, the ledger keeps the record a verifier checks.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devices.keys import DeviceKey
from devices.reading import is_valid_device_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    kid           BLOB NOT NULL UNIQUE,
    registered_at INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE TABLE IF NOT EXISTS key_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('registered', 'revoked')),
    device_id  TEXT NOT NULL REFERENCES devices (device_id),
    at_ms      INTEGER NOT NULL
);
"""


class RegistryError(Exception):
    """A registration or revocation that cannot be done as asked."""


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    patient_id: str
    key: DeviceKey
    registered_at_ms: int
    revoked_at_ms: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


@dataclass(frozen=True)
class KeyEvent:
    seq: int  # 1, 2, 3 ... in the order they happened
    kind: Literal["registered", "revoked"]
    device: DeviceRecord  # as it is now
    at_ms: int


class DeviceRegistry:
    """Devices and their keys, in one SQLite file. One instance per thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._backfill_events()

    def _backfill_events(self) -> None:
        """Registries made before key events existed get theirs, in the order they happened."""
        with self._db:
            if self._db.execute("SELECT 1 FROM key_events LIMIT 1").fetchone():
                return
            happened = [
                (at, kind, device_id)
                for device_id, registered_at, revoked_at in self._db.execute(
                    "SELECT device_id, registered_at, revoked_at FROM devices"
                )
                for at, kind in [(registered_at, "registered"), (revoked_at, "revoked")]
                if at is not None
            ]
            self._db.executemany(
                "INSERT INTO key_events (kind, device_id, at_ms) VALUES (?, ?, ?)",
                [(kind, device_id, at) for at, kind, device_id in sorted(happened)],
            )

    def close(self) -> None:
        self._db.close()

    def register(self, device_id: str, patient_id: str, key: DeviceKey) -> DeviceRecord:
        """Bind a device and its key to a patient. Re-registering the same key is a no-op."""
        if not is_valid_device_id(device_id):
            raise RegistryError(f"invalid device id {device_id!r}")
        if not is_valid_device_id(patient_id):
            raise RegistryError(f"invalid patient id {patient_id!r}")
        existing = self.get(device_id)
        if existing is not None:
            if existing.key == key and existing.patient_id == patient_id and not existing.revoked:
                return existing
            raise RegistryError(f"device {device_id} is already registered")
        now = int(time.time() * 1000)
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO devices VALUES (?, ?, ?, ?, ?, NULL)",
                    (device_id, patient_id, key.public_bytes, key.kid, now),
                )
                self._event("registered", device_id, now)
        except sqlite3.IntegrityError as exc:
            raise RegistryError("this public key is already registered to another device") from exc
        return DeviceRecord(device_id, patient_id, key, now, None)

    def revoke(self, device_id: str) -> DeviceRecord:
        now = int(time.time() * 1000)
        with self._db:
            cur = self._db.execute(
                "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                (now, device_id),
            )
            if cur.rowcount:
                self._event("revoked", device_id, now)
        record = self.get(device_id)
        if record is None:
            raise RegistryError(f"unknown device {device_id}")
        if cur.rowcount == 0:
            raise RegistryError(f"device {device_id} is already revoked")
        return record

    def _event(self, kind: str, device_id: str, at_ms: int) -> None:
        self._db.execute(
            "INSERT INTO key_events (kind, device_id, at_ms) VALUES (?, ?, ?)",
            (kind, device_id, at_ms),
        )

    def events_after(self, seq: int, limit: int = 10_000) -> list[KeyEvent]:
        """Registrations and revocations numbered above ``seq``, in order."""
        rows = self._db.execute(
            "SELECT e.seq, e.kind, e.at_ms, d.* FROM key_events e"
            " JOIN devices d ON d.device_id = e.device_id WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [KeyEvent(row[0], row[1], _record(row[3:]), row[2]) for row in rows]

    def get(self, device_id: str) -> DeviceRecord | None:
        row = self._db.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return _record(row) if row else None

    def by_kid(self, kid: bytes) -> DeviceRecord | None:
        row = self._db.execute("SELECT * FROM devices WHERE kid = ?", (kid,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[DeviceRecord]:
        rows = self._db.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return [_record(row) for row in rows]


def _record(row: tuple[Any, ...]) -> DeviceRecord:
    device_id, patient_id, public_key, _kid, registered_at, revoked_at = row
    return DeviceRecord(device_id, patient_id, DeviceKey(public_key), registered_at, revoked_at)
