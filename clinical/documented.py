"""What staff document about a patient that a wearable cannot measure, kept for good.

NEWS2 (``clinical.news2``) needs three things no device reports: the level of consciousness
(ACVPU), whether the patient breathes air or supplemental oxygen (with the flow and device, if
given), and the SpO2 scale (2 only when a clinician has set a hypercapnic target of 88-92 %).
Each is a record naming who documented it (the token's ``sub``) and when. The history is
append-only: nothing is updated or deleted (the database refuses it), a correction is a new
record, and the latest record of each kind is what a score uses. SQLite, durable on return.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from clinical.news2 import Acvpu, AirOrOxygen, Documented, Observations, SpO2Scale, Timed
from devices.reading import MAX_TIME_MS, is_valid_device_id
from ledger.database import connect_sqlite

MAX_TEXT = 200  # characters of an oxygen device or a note
MAX_FLOW_L_MIN = 60.0  # high-flow nasal oxygen tops out here
MAX_HISTORY = 500  # records of one patient a page of history holds at most
USER_ID = re.compile(r"[!-~]{1,255}")  # an OIDC ``sub`` or a role: ASCII, no space


class Kind(StrEnum):
    CONSCIOUSNESS = "consciousness"
    AIR_OR_OXYGEN = "air_or_oxygen"
    SPO2_SCALE = "spo2_scale"


ACVPU_LETTERS: Mapping[str, Acvpu] = MappingProxyType(
    {
        "A": Acvpu.ALERT,
        "C": Acvpu.NEW_CONFUSION,
        "V": Acvpu.VOICE,
        "P": Acvpu.PAIN,
        "U": Acvpu.UNRESPONSIVE,
    }
)
LETTER_OF: Mapping[Acvpu, str] = MappingProxyType({v: k for k, v in ACVPU_LETTERS.items()})


class DocumentedError(ValueError):
    """A record that is not valid; ``reason`` is a code, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Observation:
    """One documented value: ``value`` is an ACVPU letter, True for supplemental oxygen (False:
    air), or the SpO2 scale 1 or 2. Flow and device only with oxygen."""

    kind: Kind
    value: str | bool | int
    flow_l_min: float | None = None
    device: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        problem = _invalid(self)
        if problem is not None:
            raise DocumentedError(*problem)


def _text_ok(value: object) -> bool:
    """None, or printable text (it reaches pages) without surrounding space."""
    return value is None or (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TEXT
        and value.isprintable()
        and value.strip() == value
    )


def _invalid(o: Observation) -> tuple[str, str] | None:
    if not isinstance(o.kind, Kind):
        return "bad-kind", f"a documented kind is one of {', '.join(Kind)}"
    if o.kind is Kind.CONSCIOUSNESS and not (isinstance(o.value, str) and o.value in ACVPU_LETTERS):
        return "bad-consciousness", "consciousness is one ACVPU letter: A, C, V, P or U"
    if o.kind is Kind.AIR_OR_OXYGEN and not isinstance(o.value, bool):
        return "bad-oxygen", "oxygen is true (supplemental oxygen) or false (air)"
    if o.kind is Kind.SPO2_SCALE and (isinstance(o.value, bool) or o.value not in (1, 2)):
        return "bad-spo2-scale", "the SpO2 scale is 1, or 2 for a target of 88-92 %"
    oxygen = o.kind is Kind.AIR_OR_OXYGEN and o.value is True
    if (o.flow_l_min is not None or o.device is not None) and not oxygen:
        return "flow-without-oxygen", "a flow or device goes only with supplemental oxygen"
    flow = o.flow_l_min
    if flow is not None and (
        isinstance(flow, bool)
        or not isinstance(flow, int | float)
        or not math.isfinite(flow)
        or not 0 < flow <= MAX_FLOW_L_MIN
    ):
        return "bad-flow", f"an oxygen flow is more than 0 and at most {MAX_FLOW_L_MIN:g} L/min"
    if not (_text_ok(o.device) and _text_ok(o.note)):
        return "bad-text", f"a device or note is printable text of 1 to {MAX_TEXT} characters"
    return None


@dataclass(frozen=True)
class Record:
    """An observation as recorded: its place in the history, who documented it and when."""

    seq: int
    patient_id: str
    observation: Observation
    by: str  # the user (token sub)
    role: str
    time_ms: int


@dataclass(frozen=True)
class Latest:
    """The latest record of each kind, as ``clinical.news2.Observations`` takes them."""

    consciousness: Documented[Acvpu] | None = None
    air_or_oxygen: Documented[AirOrOxygen] | None = None
    spo2_scale: Documented[SpO2Scale] | None = None

    def with_vitals(self, vitals: Mapping[str, Timed]) -> Observations:
        """What a NEWS2 score takes: the measured ``vitals`` (by LOINC) with these."""
        return Observations(vitals, self.consciousness, self.air_or_oxygen, self.spo2_scale)


def latest_of(found: Mapping[Kind, Record]) -> Latest:
    """The latest records of each kind as a NEWS2 score takes them."""
    c, o2, scale = (found.get(kind) for kind in Kind)
    return Latest(
        None if c is None else Documented(ACVPU_LETTERS[str(c.observation.value)], c.by, c.time_ms),
        None
        if o2 is None
        else Documented(
            AirOrOxygen.OXYGEN if o2.observation.value is True else AirOrOxygen.AIR,
            o2.by,
            o2.time_ms,
        ),
        None
        if scale is None
        else Documented(SpO2Scale(int(scale.observation.value)), scale.by, scale.time_ms),
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS documented (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    flow_l_min REAL,
    device TEXT,
    note TEXT,
    by TEXT NOT NULL,
    role TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS documented_by_patient ON documented (patient_id, kind, seq);
CREATE TRIGGER IF NOT EXISTS documented_no_update BEFORE UPDATE ON documented
BEGIN SELECT RAISE(ABORT, 'documented observations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS documented_no_delete BEFORE DELETE ON documented
BEGIN SELECT RAISE(ABORT, 'documented observations are append-only'); END;
"""


def _stored(value: str | bool | int) -> str:
    return ("oxygen" if value else "air") if isinstance(value, bool) else str(value)


def _loaded(kind: Kind, text: str) -> str | bool | int:
    if kind is Kind.AIR_OR_OXYGEN:
        return text == "oxygen"
    return int(text) if kind is Kind.SPO2_SCALE else text


class DocumentedStore:
    """The documented observations of every patient, in the order they were recorded. One
    connection: open one store per thread."""

    def __init__(self, path: Path) -> None:
        self._db = connect_sqlite(path)  # WAL, full fsync; threads may open it at once
        self._db.executescript(_SCHEMA)

    def record(
        self,
        patient_id: str,
        observations: tuple[Observation, ...],
        by: str,
        role: str,
        time_ms: int,
    ) -> list[Record]:
        """Append ``observations`` (documented together), durable on return."""
        if not (isinstance(patient_id, str) and is_valid_device_id(patient_id)):
            raise DocumentedError("bad-patient", "not a patient id")
        if not (USER_ID.fullmatch(by) and USER_ID.fullmatch(role)):
            raise DocumentedError("bad-author", "who documented it is an ASCII id")
        if isinstance(time_ms, bool) or not 0 <= time_ms <= MAX_TIME_MS:
            raise DocumentedError("bad-time", "a time is milliseconds since the Unix epoch")
        if not observations:
            raise DocumentedError("nothing-documented", "document at least one observation")
        for o in observations:
            if not isinstance(o, Observation):
                raise DocumentedError("bad-kind", "not an observation")
        if len({o.kind for o in observations}) != len(observations):
            raise DocumentedError("kind-repeated", "each kind at most once in one record")
        records = []
        with self._db:  # one transaction: all of them or none
            for o in observations:
                cursor = self._db.execute(
                    "INSERT INTO documented (patient_id, kind, value, flow_l_min, device, note,"
                    " by, role, time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (patient_id, o.kind.value, _stored(o.value), o.flow_l_min, o.device,
                     o.note, by, role, time_ms),
                )  # fmt: skip
                assert cursor.lastrowid is not None
                records.append(Record(cursor.lastrowid, patient_id, o, by, role, time_ms))
        return records

    def history(self, patient_id: str, limit: int = MAX_HISTORY) -> list[Record]:
        """The patient's records, newest first."""
        rows = self._db.execute(
            "SELECT seq, patient_id, kind, value, flow_l_min, device, note, by, role, time_ms"
            " FROM documented WHERE patient_id = ? ORDER BY seq DESC LIMIT ?",
            (patient_id, max(0, min(limit, MAX_HISTORY))),
        ).fetchall()
        return [_record(row) for row in rows]

    def latest(self, patient_id: str) -> Latest:
        """The latest value of each kind, as a NEWS2 score takes them."""
        return latest_of(self.latest_records(patient_id))

    def latest_records(self, patient_id: str) -> dict[Kind, Record]:
        """The latest record of each kind documented (what a score uses)."""
        found: dict[Kind, Record] = {}
        for kind in Kind:
            row = self._db.execute(
                "SELECT seq, patient_id, kind, value, flow_l_min, device, note, by, role,"
                " time_ms FROM documented WHERE patient_id = ? AND kind = ?"
                " ORDER BY seq DESC LIMIT 1",
                (patient_id, kind.value),
            ).fetchone()
            if row is not None:
                found[kind] = _record(row)
        return found

    def latest_records_of(
        self, patients: Collection[str] | None = None
    ) -> dict[str, dict[Kind, Record]]:
        """The latest record of each kind of ``patients`` (None: of everyone), in one query
        (a ward's worth)."""
        only = "" if patients is None else " WHERE patient_id IN (SELECT value FROM json_each(?))"
        rows = self._db.execute(
            "SELECT seq, patient_id, kind, value, flow_l_min, device, note, by, role, time_ms"
            " FROM documented WHERE seq IN"
            f" (SELECT MAX(seq) FROM documented{only} GROUP BY patient_id, kind)",
            () if patients is None else (json.dumps(sorted(patients)),),
        ).fetchall()
        found: dict[str, dict[Kind, Record]] = {}
        for row in rows:
            record = _record(row)
            found.setdefault(record.patient_id, {})[record.observation.kind] = record
        return found

    def close(self) -> None:
        self._db.close()


def _record(
    row: tuple[int, str, str, str, float | None, str | None, str | None, str, str, int],
) -> Record:
    seq, patient_id, kind_text, value, flow, device, note, by, role, time_ms = row
    kind = Kind(kind_text)
    observation = Observation(kind, _loaded(kind, value), flow, device, note)
    return Record(seq, patient_id, observation, by, role, time_ms)
