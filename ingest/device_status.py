"""Each device's technical state as the ingestor sees it: last verified message, battery, and
messages whose signature failed.

Technical alerts (``clinical.alerts``) and the patient page's device card read it. The ingestor
handles thousands of readings a second, so its news is gathered in a :class:`StatusBatch`
(one entry per device, however many readings and batches) and written in one transaction at
each seal, about once a second: one upsert per device per flush. Failures are also counted per minute (kept an
hour), so "failures in the last 10 minutes" is a sum of at most 10 rows.

The file is advisory, not a record (the ledger is): it is written without an fsync per commit
(WAL, ``synchronous=NORMAL``), so a power cut may lose its last seconds, never corrupt it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devices.reading import Reading
from ingest.store import MINUTE_MS
from ledger.database import connect_sqlite, int_column

KEEP_MINUTES = 60  # failure counts per minute older than this are deleted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_status (
    device_id TEXT PRIMARY KEY,
    last_seen_ms INTEGER,
    battery_pct INTEGER,
    battery_time_ms INTEGER,
    signature_failures INTEGER NOT NULL DEFAULT 0,
    last_failure_ms INTEGER,
    last_failure_reason TEXT,
    usual_gap_ms INTEGER
);
CREATE TABLE IF NOT EXISTS device_failure_minute (
    device_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (device_id, minute)
) WITHOUT ROWID;
"""

# SQLite's max(a, b) is NULL when either is: coalesce keeps whichever is known. The SET
# expressions read the row as it was. usual_gap_ms: how often the device reports, a moving
# average of the gaps between the flushes that saw it (a wristband ~1 s, a cuff ~15 min), so
# that "silent" can mean "missed its reports" (clinical.alerts.DeviceLimits.silent_after_ms).
_UPSERT = """
INSERT INTO device_status VALUES (?, ?, ?, ?, ?, ?, ?, NULL)
ON CONFLICT (device_id) DO UPDATE SET
    usual_gap_ms = CASE
        WHEN last_seen_ms IS NULL OR excluded.last_seen_ms IS NULL
             OR excluded.last_seen_ms <= last_seen_ms THEN usual_gap_ms
        WHEN usual_gap_ms IS NULL THEN excluded.last_seen_ms - last_seen_ms
        ELSE (3 * usual_gap_ms + excluded.last_seen_ms - last_seen_ms) / 4 END,
    last_seen_ms = coalesce(max(last_seen_ms, excluded.last_seen_ms), last_seen_ms,
                            excluded.last_seen_ms),
    battery_pct = CASE WHEN excluded.battery_time_ms >= coalesce(battery_time_ms, -1)
                       THEN excluded.battery_pct ELSE battery_pct END,
    battery_time_ms = coalesce(max(battery_time_ms, excluded.battery_time_ms), battery_time_ms,
                               excluded.battery_time_ms),
    signature_failures = signature_failures + excluded.signature_failures,
    last_failure_reason = CASE WHEN excluded.last_failure_ms >= coalesce(last_failure_ms, -1)
                               THEN excluded.last_failure_reason ELSE last_failure_reason END,
    last_failure_ms = coalesce(max(last_failure_ms, excluded.last_failure_ms), last_failure_ms,
                               excluded.last_failure_ms)
"""
_COUNT_MINUTE = """
INSERT INTO device_failure_minute VALUES (?, ?, ?)
ON CONFLICT (device_id, minute) DO UPDATE SET failures = failures + excluded.failures
"""


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    last_seen_ms: int | None  # when the ingestor last took a message that verified
    battery_pct: int | None  # the latest charge the device reported (signed), and its time
    battery_time_ms: int | None  # the latest sample time of the reading that carried it
    signature_failures: int  # messages whose signature failed, ever
    recent_failures: int  # of those, in the window asked for (to the minute)
    last_failure_ms: int | None
    last_failure_reason: str | None  # the ingest reason code (ingest.reasons.Reason)
    usual_gap_ms: int | None = None  # how often it reports; None: seen once or never


@dataclass
class _Pending:
    seen_ms: int | None = None
    battery: tuple[int, int] | None = None  # (time_ms, pct)
    failures: int = 0
    failed_ms: int | None = None
    reason: str | None = None


@dataclass
class StatusBatch:
    """One ingest batch's news of its devices, merged per device."""

    devices: dict[str, _Pending] = field(default_factory=dict)
    minutes: dict[tuple[str, int], int] = field(default_factory=dict)

    def verified(self, reading: Reading, received_ms: int) -> None:
        pending = self.devices.setdefault(reading.device_id, _Pending())
        pending.seen_ms = max(pending.seen_ms or received_ms, received_ms)
        if reading.battery_pct is not None:
            at = max(s.time_ms for s in reading.samples)
            if pending.battery is None or at >= pending.battery[0]:
                pending.battery = (at, reading.battery_pct)

    def failed(self, device_id: str, received_ms: int, reason: str) -> None:
        pending = self.devices.setdefault(device_id, _Pending())
        pending.failures += 1
        if pending.failed_ms is None or received_ms >= pending.failed_ms:
            pending.failed_ms, pending.reason = received_ms, reason
        minute = (device_id, received_ms // MINUTE_MS)
        self.minutes[minute] = self.minutes.get(minute, 0) + 1


class DeviceStatusStore:
    """The ``device_status`` SQLite file. One instance per thread."""

    def __init__(self, path: Path) -> None:
        self._db = connect_sqlite(path)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(device_status)")}
        if "usual_gap_ms" not in columns:  # a file from before the column
            self._db.execute("ALTER TABLE device_status ADD COLUMN usual_gap_ms INTEGER")

    def close(self) -> None:
        self._db.close()

    def record(self, batch: StatusBatch) -> None:
        """Write a batch's news: one upsert per device, in one transaction."""
        if not batch.devices:
            return
        rows = [
            (
                device_id,
                p.seen_ms,
                p.battery[1] if p.battery else None,
                p.battery[0] if p.battery else None,
                p.failures,
                p.failed_ms,
                p.reason,
            )
            for device_id, p in batch.devices.items()
        ]
        with self._db:
            self._db.executemany(_UPSERT, rows)
            if batch.minutes:
                self._db.executemany(
                    _COUNT_MINUTE, [(d, m, n) for (d, m), n in batch.minutes.items()]
                )
                oldest = max(m for _, m in batch.minutes) - KEEP_MINUTES
                self._db.execute("DELETE FROM device_failure_minute WHERE minute < ?", (oldest,))

    def statuses(
        self, now_ms: int, window_ms: int, device_ids: Iterable[str] | None = None
    ) -> dict[str, DeviceStatus]:
        """The devices' states (every device known, or those named), with the failures of the
        last ``window_ms`` counted by whole minutes (a minute the window starts in counts)."""
        since = (now_ms - window_ms) // MINUTE_MS
        query = (
            "SELECT s.*, coalesce((SELECT sum(failures) FROM device_failure_minute f"
            " WHERE f.device_id = s.device_id AND f.minute >= ?), 0) FROM device_status s"
        )
        if device_ids is None:
            rows = self._db.execute(query, (since,)).fetchall()
        else:
            wanted = sorted(set(device_ids))
            marks = ", ".join("?" * len(wanted))
            rows = self._db.execute(
                f"{query} WHERE s.device_id IN ({marks})", (since, *wanted)
            ).fetchall()
        return {row[0]: _status(row) for row in rows}


def _status(row: tuple[object, ...]) -> DeviceStatus:
    device_id, seen, pct, battery_ms, failures, failed_ms, reason, gap, recent = row
    return DeviceStatus(
        str(device_id),
        _int_or_none(seen, "last_seen_ms"),
        _int_or_none(pct, "battery_pct"),
        _int_or_none(battery_ms, "battery_time_ms"),
        int_column(failures, "signature_failures"),
        int_column(recent, "recent failures"),
        _int_or_none(failed_ms, "last_failure_ms"),
        None if reason is None else str(reason),
        _int_or_none(gap, "usual_gap_ms"),
    )


def _int_or_none(value: object, name: str) -> int | None:
    return None if value is None else int_column(value, name)
