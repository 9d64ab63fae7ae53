"""The embedded time-series store: SQLite, WAL, one fsync per batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.sqlite import connect
from ingest.store import (
    MINUTE_MS,
    RAW_RETENTION_MS,
    Bucket,
    LatestVital,
    SamplePoint,
    use_minutes,
    wall_clock_ms,
)

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
CREATE TABLE IF NOT EXISTS minutes (
    patient_id  TEXT NOT NULL,
    code        TEXT NOT NULL,
    minute_ms   INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total       REAL NOT NULL,
    low         REAL NOT NULL,
    high        REAL NOT NULL,
    PRIMARY KEY (patient_id, code, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty_minutes (
    patient_id  TEXT NOT NULL,
    code        TEXT NOT NULL,
    minute_ms   INTEGER NOT NULL,
    PRIMARY KEY (patient_id, code, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_ROLL_UP = """
INSERT OR REPLACE INTO minutes
SELECT patient_id, code, time_ms - time_ms % 60000, count(*), sum(value), min(value), max(value)
FROM samples WHERE {where}
GROUP BY patient_id, code, time_ms - time_ms % 60000
"""

_UPSERT_LATEST = """
INSERT INTO latest VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (patient_id, code) DO UPDATE SET
    unit = excluded.unit, value = excluded.value,
    time_ms = excluded.time_ms, entry_index = excluded.entry_index
WHERE excluded.time_ms >= latest.time_ms
"""


class SqliteStore:
    """Samples, a small table of each patient's latest value per vital, and 1-minute
    aggregates kept after the raw samples expire."""

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        raw_retention_ms: int = RAW_RETENTION_MS,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._db = connect(path, _SCHEMA, read_only=read_only)
        self.raw_retention_ms = raw_retention_ms
        self._clock = clock

    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM store_meta WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

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
            rolled = self._meta("rolled_until_ms")
            late = {
                (p.patient_id, p.code, p.time_ms - p.time_ms % MINUTE_MS)
                for p in points
                if p.time_ms < rolled
            }
            self._db.executemany("INSERT OR IGNORE INTO dirty_minutes VALUES (?, ?, ?)", late)
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

    def compact(self, now_ms: int) -> None:
        horizon = now_ms - self.raw_retention_ms
        until = now_ms - now_ms % MINUTE_MS  # complete minutes only
        with self._db:
            rolled = self._meta("rolled_until_ms")
            self._db.execute(_ROLL_UP.format(where="time_ms >= ? AND time_ms < ?"), (rolled, until))
            self._db.execute(  # late samples in minutes rolled up before
                _ROLL_UP.format(
                    where="(patient_id, code, time_ms - time_ms % 60000) IN"
                    " (SELECT patient_id, code, minute_ms FROM dirty_minutes)"
                )
            )
            self._db.execute("DELETE FROM dirty_minutes")
            self._db.execute(
                "INSERT OR REPLACE INTO store_meta VALUES ('rolled_until_ms', ?)",
                (max(rolled, until),),
            )
            self._db.execute(
                "DELETE FROM samples WHERE time_ms < ? AND time_ms < ?", (horizon, until)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO store_meta VALUES ('raw_horizon_ms', ?)", (horizon,)
            )

    def series(
        self, patient_id: str, code: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        if bucket_ms <= 0:
            raise ValueError("bucket width must be positive")
        if use_minutes(start_ms, bucket_ms, self._clock() - self.raw_retention_ms):
            rows = self._db.execute(
                """
                SELECT ? + ((minute_ms - ?) / ?) * ? AS bucket, sum(total) / sum(n), min(low),
                       max(high), sum(n)
                FROM minutes WHERE patient_id = ? AND code = ? AND minute_ms >= ? AND minute_ms < ?
                GROUP BY bucket ORDER BY bucket
                """,
                (start_ms, start_ms, bucket_ms, bucket_ms, patient_id, code, start_ms, end_ms),
            )
            return [Bucket(*row) for row in rows]
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
