"""The time-series store interface: an index of samples for dashboards.

The ledger is the record; a store can be dropped and rebuilt from it. Writes are idempotent
(a sample is keyed by device, sequence number and position), so redelivered messages and
replays after a crash write nothing twice. Raw samples are kept for a retention window; beyond
it, 1-minute aggregates (sum, count, min, max per patient, vital and minute) answer range
queries, which pick raw or aggregates by the range asked (:func:`use_minutes`); :meth:`count`
counts raw samples only. Backends:
:mod:`ingest.sqlite_store` (embedded default) and :mod:`ingest.influx_store`. Calls are synchronous and made from the ingestor's
writer thread; :mod:`ingest.reindex` rebuilds a store from the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from devices.reading import Reading


@dataclass(frozen=True)
class SamplePoint:
    patient_id: str
    device_id: str
    seq: int
    position: int  # index of the sample in its reading
    entry_index: int  # the ledger entry holding the signed reading
    code: str
    unit: str
    value: float
    time_ms: int


@dataclass(frozen=True)
class LatestVital:
    patient_id: str
    code: str
    unit: str
    value: float
    time_ms: int
    entry_index: int


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    mean: float
    low: float
    high: float
    count: int


def sample_points(reading: Reading, patient_id: str, entry_index: int) -> list[SamplePoint]:
    """The store's points for a recorded reading: one per sample."""
    return [
        SamplePoint(
            patient_id,
            reading.device_id,
            reading.seq,
            position,
            entry_index,
            s.code,
            s.unit,
            s.value,
            s.time_ms,
        )
        for position, s in enumerate(reading.samples)
    ]


MINUTE_MS = 60_000
# Raw samples are kept as long as the checks accept a reading's age (ingest.checks.Limits):
# no admitted sample can then arrive after its minute has left the raw window.
RAW_RETENTION_MS = 14 * 86_400_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def use_minutes(start_ms: int, bucket_ms: int, raw_horizon_ms: int) -> bool:
    """Whether a range query reads the 1-minute aggregates rather than raw samples: when it
    reaches back past the raw window (raw samples are gone there), in buckets of whole minutes
    from a minute boundary. Within the raw window raw samples answer, the latest included.
    A finer bucket on a range past the raw window gets what raw samples are left."""
    aligned = bucket_ms % MINUTE_MS == 0 and start_ms % MINUTE_MS == 0
    return aligned and start_ms < raw_horizon_ms


class TimeSeriesStore(Protocol):
    def write(self, points: Sequence[SamplePoint]) -> None:
        """Store points durably (returns only once they survive a crash)."""

    def patients(self) -> list[str]: ...

    def latest(self, patient_id: str | None = None) -> list[LatestVital]:
        """The newest value of each vital, for one patient or all."""

    def series(
        self, patient_id: str, code: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        """One vital of one patient in ``[start_ms, end_ms)``, downsampled to ``bucket_ms``."""

    def count(self) -> int:
        """How many raw sample points are stored."""

    def compact(self, now_ms: int) -> None:
        """Roll complete minutes up into 1-minute aggregates (kept for good), and the minutes
        late samples touched again; raw samples older than the raw retention are dropped (by
        SQLite's store here; by InfluxDB's raw retention policy on its own schedule)."""

    def close(self) -> None: ...
