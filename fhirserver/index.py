"""The observation index: which FHIR Observations the ledger holds, whose, of what, and when.

FHIR search asks "this patient's heart rate between these times, newest first", which the
ledger (ordered by entry) cannot answer and the time-series store must not (it forgets raw
samples after its retention, may be InfluxDB, and is not the record). So a derived SQLite
table in its own file of the data directory (``Settings.fhir_index_path``) holds one row per
Observation: ``(entry_index, code, repeat)`` - what its id names (``fhirserver.observations``:
``e123-8867-4``, ``e123-8867-4.1``) - with the patient and the effective time. It is filled only by following the
ledger, with the same decoding as ``vitaltrail reindex`` (``ingest.reindex.logged_readings``):
a reading's patient is the one its key's registration names, earlier in the log.

:meth:`ObservationIndex.catch_up` brings it to the ledger's current size: from the last
indexed entry on, so it is cheap when called before every search. One writer at a time (a
thread lock, and SQLite's ``BEGIN IMMEDIATE`` between processes); readers use their own
connections (:class:`IndexReader`, one per read thread). The index remembers the tree root at
the size it reached: a log that no longer starts with what was indexed (a replaced data
directory) is indexed again from the start. Deleting the file is always safe.

Rows only name entries below ``as_of`` in each query: a search walking its pages sees the log
as it was at its first page (see ``fhirserver.search``), while readings keep arriving.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from access.sqlite import SqliteFile
from fhirserver.observations import observation_id, observation_keys
from ingest.reindex import ReindexStats, logged_readings
from ledger.database import connect_sqlite
from ledger.ledger import LedgerReader

log = logging.getLogger("vitaltrail.fhir.index")

SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    entry_index INTEGER NOT NULL,
    code        TEXT NOT NULL,
    repeat      INTEGER NOT NULL,
    patient_id  TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    PRIMARY KEY (entry_index, code, repeat)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS observations_by_code
    ON observations (patient_id, code, time_ms, entry_index, repeat);
CREATE INDEX IF NOT EXISTS observations_by_time
    ON observations (patient_id, time_ms, entry_index, code, repeat);
CREATE TABLE IF NOT EXISTS patient_codes (
    patient_id TEXT NOT NULL,
    code       TEXT NOT NULL,
    PRIMARY KEY (patient_id, code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS patient_devices (
    patient_id TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (patient_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_keys (
    kid        BLOB PRIMARY KEY,
    patient_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS followed (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID
"""

BATCH_ENTRIES = 50_000  # entries indexed per transaction while catching up a long way
_TABLES = ("observations", "patient_codes", "patient_devices", "device_keys")
_COLUMNS = "entry_index, code, repeat, patient_id, time_ms"

Key = tuple[int, int, str, int]  # the sort key: (time_ms, entry_index, code, repeat)


@dataclass(frozen=True)
class IndexRow:
    """One Observation, named as ``fhirserver.observations`` names it."""

    entry_index: int
    code: str  # the Observation's code: the sample's LOINC, or its panel's (85354-9)
    repeat: int  # the how-many-th Observation of its code in the reading (usually 0)
    patient_id: str
    time_ms: int  # effectiveDateTime

    @property
    def key(self) -> Key:
        return (self.time_ms, self.entry_index, self.code, self.repeat)

    @property
    def id(self) -> str:
        return observation_id(self.entry_index, self.code, self.repeat)


@dataclass(frozen=True)
class Slice:
    """What a search asks of the index: rows of ``patients``, of ``codes`` (None: any), with
    ``start_ms <= time < end_ms``, logged below ``as_of``, after ``after`` in sort order."""

    patients: tuple[str, ...]
    codes: tuple[str, ...] | None
    start_ms: int | None
    end_ms: int | None
    as_of: int
    descending: bool = False
    after: Key | None = None


class ObservationIndex:
    """The index's writer: catches it up with the ledger. One per process, any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, SCHEMA)
        self._lock = threading.Lock()
        self._checked = False  # whether this process checked the log still starts as indexed
        self.cursor_key = self._cursor_key()

    def _cursor_key(self) -> bytes:
        """The key paging cursors are authenticated with: made once, kept with the index (a
        rebuilt index makes earlier cursors invalid, as it does their positions)."""
        with self._file.transaction() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO followed VALUES ('cursor-key', ?)",
                (secrets.token_bytes(32),),
            )
            (key,) = cur.execute("SELECT value FROM followed WHERE name = 'cursor-key'").fetchone()
        return bytes(key)

    def indexed_size(self) -> int:
        rows = self._file.query("SELECT value FROM followed WHERE name = 'size'")
        return int.from_bytes(rows[0][0], "big") if rows else 0

    def catch_up(self, ledger: LedgerReader) -> int:
        """Index what the ledger holds beyond what is indexed; return the size now indexed
        (every entry below it is in the index)."""
        target = ledger.log.stored_size()
        if self._checked and (size := self.indexed_size()) >= target:
            return size
        with self._lock:
            size = self._catch_up(ledger, target)
            self._checked = True
            return size

    def _catch_up(self, ledger: LedgerReader, target: int) -> int:
        size, root = self._followed()
        if size > target or (size and not hmac.compare_digest(ledger.log.root_at(size), root)):
            log.warning("the ledger does not start with what was indexed: indexing it again")
            self._forget()
            size = 0
        patients = {bytes(k): p for k, p in self._file.query("SELECT * FROM device_keys")}
        stats = ReindexStats()
        while size < target:
            end = min(target, size + BATCH_ENTRIES)
            size = self._index(ledger, size, end, patients, stats)
        if stats.entries:
            log.debug(
                "indexed %d entries: %d readings, %d skipped",
                stats.entries, stats.readings, stats.skipped,
            )  # fmt: skip
        return size

    def _index(
        self,
        ledger: LedgerReader,
        start: int,
        end: int,
        patients: dict[bytes, str],
        stats: ReindexStats,
    ) -> int:
        """Index entries ``[start, end)`` in one transaction; the size indexed after it."""
        before = dict(patients)
        rows: list[tuple[int, str, int, str, int]] = []
        devices: set[tuple[str, str]] = set()
        for logged in logged_readings(ledger, start, end, patients, stats):
            devices.add((logged.patient_id, logged.reading.device_id))
            for code, repeat, time_ms in observation_keys(logged.reading):
                rows.append((logged.index, code, repeat, logged.patient_id, time_ms))
        keys = [(kid, p) for kid, p in patients.items() if before.get(kid) != p]
        root = ledger.log.root_at(end)
        with self._file.transaction() as cur:
            size, _ = self._read_followed(cur)
            if size != start:  # another process indexed meanwhile: go on from where it is
                return size
            cur.executemany(
                f"INSERT OR IGNORE INTO observations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows
            )
            cur.executemany(
                "INSERT OR IGNORE INTO patient_codes VALUES (?, ?)",
                sorted({(r[3], r[1]) for r in rows}),
            )
            cur.executemany("INSERT OR IGNORE INTO patient_devices VALUES (?, ?)", sorted(devices))
            cur.executemany("INSERT OR REPLACE INTO device_keys VALUES (?, ?)", keys)
            cur.executemany(
                "INSERT OR REPLACE INTO followed VALUES (?, ?)",
                [("size", end.to_bytes(8, "big")), ("root", root)],
            )
        return end

    def _followed(self) -> tuple[int, bytes]:
        with self._file.transaction() as cur:
            return self._read_followed(cur)

    @staticmethod
    def _read_followed(cur: sqlite3.Cursor) -> tuple[int, bytes]:
        found = dict(cur.execute("SELECT name, value FROM followed WHERE name IN ('size', 'root')"))
        size = found.get("size")
        return (int.from_bytes(size, "big") if size else 0), bytes(found.get("root", b""))

    def _forget(self) -> None:
        with self._file.transaction() as cur:
            for table in _TABLES:
                cur.execute(f"DELETE FROM {table}")
            cur.execute("DELETE FROM followed WHERE name IN ('size', 'root')")

    def close(self) -> None:
        self._file.close()


class IndexReader:
    """One read thread's view of the index (its own connection; never writes)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():  # nothing indexed yet: an empty index to read
            SqliteFile(path, SCHEMA).close()
        self._conn = connect_sqlite(path, read_only=True)

    def close(self) -> None:
        self._conn.close()

    def row(self, entry_index: int, code: str, repeat: int = 0) -> IndexRow | None:
        """The Observation ``(entry_index, code, repeat)``, if the ledger holds it (as indexed)."""
        found = self._conn.execute(
            f"SELECT {_COLUMNS} FROM observations "
            "WHERE entry_index = ? AND code = ? AND repeat = ?",
            (entry_index, code, repeat),
        ).fetchone()
        return IndexRow(*found) if found else None

    def patients(self) -> list[str]:
        """Every patient with Observations, in order."""
        return [
            p
            for (p,) in self._conn.execute(
                "SELECT DISTINCT patient_id FROM patient_codes ORDER BY 1"
            )
        ]

    def codes(self, patient_id: str) -> list[str]:
        """The codes of a patient's Observations, in order."""
        query = "SELECT code FROM patient_codes WHERE patient_id = ? ORDER BY code"
        return [c for (c,) in self._conn.execute(query, (patient_id,))]

    def devices(self, patient_id: str) -> list[str]:
        """The devices whose readings are a patient's Observations, in order."""
        query = "SELECT device_id FROM patient_devices WHERE patient_id = ? ORDER BY device_id"
        return [d for (d,) in self._conn.execute(query, (patient_id,))]

    def search(self, where: Slice, limit: int) -> list[IndexRow]:
        """At most ``limit`` rows of ``where``, in sort order (time, entry, code, repeat), or its
        reverse."""
        sql, params = _where(where)
        order = "DESC" if where.descending else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM observations WHERE {sql} "
            f"ORDER BY time_ms {order}, entry_index {order}, code {order}, repeat {order} LIMIT ?"
        )
        return [IndexRow(*r) for r in self._conn.execute(sql, (*params, limit))]

    def logged(self, start: int, end: int, patients: Sequence[str] | None = None) -> list[IndexRow]:
        """The Observations of entries ``[start, end)`` (of ``patients``, or anyone's), in log
        order: what arrived between two sizes :meth:`ObservationIndex.catch_up` returned (a
        subscription's new Observations)."""
        sql = f"SELECT {_COLUMNS} FROM observations WHERE entry_index >= ? AND entry_index < ?"
        params: list[object] = [start, end]
        if patients is not None:
            sql += f" AND patient_id IN ({_marks(patients)})"
            params.extend(patients)
        sql += " ORDER BY entry_index, code, repeat"
        return [IndexRow(*r) for r in self._conn.execute(sql, params)]

    def count(self, where: Slice, cap: int) -> int | None:
        """How many rows ``where`` has (ignoring ``after``), or None past ``cap`` (too many
        to count on every page)."""
        sql, params = _where(replace(where, after=None))
        query = f"SELECT COUNT(*) FROM (SELECT 1 FROM observations WHERE {sql} LIMIT ?)"
        (n,) = self._conn.execute(query, (*params, cap + 1)).fetchone()
        return None if n > cap else int(n)

    def latest(self, where: Slice, per_code: int) -> list[IndexRow]:
        """The newest ``per_code`` rows of each code of ``where``, by patient and code."""
        found: list[IndexRow] = []
        for patient in where.patients:
            codes = self.codes(patient)
            if where.codes is not None:
                codes = [c for c in codes if c in where.codes]
            for code in codes:
                one = replace(
                    where, patients=(patient,), codes=(code,), descending=True, after=None
                )
                found.extend(self.search(one, per_code))
        return found


def _where(where: Slice) -> tuple[str, list[object]]:
    """The SQL condition of a slice, and its parameters."""
    clauses = [f"patient_id IN ({_marks(where.patients)})", "entry_index < ?"]
    params: list[object] = [*where.patients, where.as_of]
    if where.codes is not None:
        clauses.append(f"code IN ({_marks(where.codes)})")
        params.extend(where.codes)
    start, end = where.start_ms, where.end_ms
    if where.after is not None:
        # The cursor's time narrows the time range itself: SQLite bounds its index scan by one
        # range on time_ms (a row-value comparison is only a filter), so a deep page would
        # otherwise scan every row of the pages before it.
        after_ms = where.after[0]
        if where.descending:
            end = after_ms + 1 if end is None else min(end, after_ms + 1)
        else:
            start = after_ms if start is None else max(start, after_ms)
    if start is not None:
        clauses.append("time_ms >= ?")
        params.append(start)
    if end is not None:
        clauses.append("time_ms < ?")
        params.append(end)
    if where.after is not None:
        sign = "<" if where.descending else ">"
        clauses.append(f"(time_ms, entry_index, code, repeat) {sign} (?, ?, ?, ?)")
        params.extend(where.after)
    return " AND ".join(clauses), params


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values)) or "NULL"
