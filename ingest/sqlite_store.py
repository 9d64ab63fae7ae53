"""The embedded time-series store: SQLite, WAL, one fsync per batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ingest.sqlite import connect
from ingest.store import Bucket, LatestVital, SamplePoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    patient_id  TEXT NOT NULL,
    code        TEXT NOT NULL,
    unit        TEXT NOT NULL,
    value       REAL NOT NULL,
    time_ms     INTEGER NOT NULL,
    entry_index INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_by_vital ON samples (patient_id, code, time_ms);
CREATE TABLE IF NOT EXISTS latest (
    patient_id  TEXT NOT NULL,
    code        TEXT NOT NULL,
    unit        TEXT NOT NULL,
    value       REAL NOT NULL,
    time_ms     INTEGER NOT NULL,
    entry_index INTEGER NOT NULL,
    PRIMARY KEY (patient_id, code)
) WITHOUT ROWID;
"""

_UPSERT_LATEST = """
INSERT INTO latest VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (patient_id, code) DO UPDATE SET
    unit = excluded.unit, value = excluded.value,
    time_ms = excluded.time_ms, entry_index = excluded.entry_index
WHERE excluded.time_ms >= latest.time_ms
"""


class SqliteStore:
    """Samples plus a small table of each patient's latest value per vital."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._db = connect(path, _SCHEMA, read_only=read_only)

    def close(self) -> None:
        self._db.close()

    def write(self, points: Sequence[SamplePoint]) -> None:
        if not points:
            return
        newest: dict[tuple[str, str], SamplePoint] = {}
        for p in points:
            key = (p.patient_id, p.code)
            if key not in newest or p.time_ms >= newest[key].time_ms:
                newest[key] = p
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.device_id,
                        p.seq,
                        p.position,
                        p.patient_id,
                        p.code,
                        p.unit,
                        p.value,
                        p.time_ms,
                        p.entry_index,
                    )
                    for p in points
                ],
            )
            self._db.executemany(
                _UPSERT_LATEST,
                [
                    (p.patient_id, p.code, p.unit, p.value, p.time_ms, p.entry_index)
                    for p in newest.values()
                ],
            )

    def patients(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT patient_id FROM latest ORDER BY patient_id")
        return [r[0] for r in rows]

    def latest(self, patient_id: str | None = None) -> list[LatestVital]:
        if patient_id is None:
            rows = self._db.execute("SELECT * FROM latest ORDER BY patient_id, code")
        else:
            rows = self._db.execute(
                "SELECT * FROM latest WHERE patient_id = ? ORDER BY code", (patient_id,)
            )
        return [LatestVital(*row) for row in rows]

    def series(
        self, patient_id: str, code: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        if bucket_ms <= 0:
            raise ValueError("bucket width must be positive")
        rows = self._db.execute(
            """
            SELECT ? + ((time_ms - ?) / ?) * ? AS bucket, avg(value), min(value), max(value), count(*)
            FROM samples WHERE patient_id = ? AND code = ? AND time_ms >= ? AND time_ms < ?
            GROUP BY bucket ORDER BY bucket
            """,
            (start_ms, start_ms, bucket_ms, bucket_ms, patient_id, code, start_ms, end_ms),
        )
        return [Bucket(*row) for row in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM samples").fetchone()[0])
