"""The embedded time-series store: idempotent writes, latest values, downsampled ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.sqlite_store import SqliteStore
from ingest.store import SamplePoint

T0 = 1_763_700_000_000


def _point(
    seq: int, value: float, t: int, patient: str = "p1", code: str = "8867-4"
) -> SamplePoint:
    return SamplePoint(patient, f"{patient}-band", seq, 0, seq, code, "/min", value, t)


def test_writes_are_idempotent_and_latest_keeps_the_newest(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([_point(1, 70, T0 + 1000), _point(0, 60, T0)])
    store.write([_point(1, 70, T0 + 1000)])  # redelivery
    store.write([_point(0, 60, T0)])  # an older reading replayed late must not win
    assert store.count() == 2
    (latest,) = store.latest("p1")
    assert (latest.value, latest.time_ms) == (70, T0 + 1000)
    assert store.patients() == ["p1"]


def test_series_downsamples_into_buckets(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([_point(i, 60 + i % 10, T0 + i * 1000) for i in range(600)])  # 10 minutes at 1 Hz
    buckets = store.series("p1", "8867-4", T0, T0 + 600_000, 60_000)
    assert len(buckets) == 10
    assert all(b.count == 60 for b in buckets)
    assert buckets[0].start_ms == T0
    assert buckets[0].low == 60
    assert buckets[0].high == 69
    assert buckets[0].mean == pytest.approx(64.5)
    assert store.series("p1", "8867-4", T0 + 30_000, T0 + 90_000, 60_000)[0].count == 60
    assert store.series("p2", "8867-4", T0, T0 + 600_000, 60_000) == []
    with pytest.raises(ValueError, match="positive"):
        store.series("p1", "8867-4", T0, T0 + 1, 0)


def test_a_read_only_view_sees_committed_writes(tmp_path: Path) -> None:
    writer = SqliteStore(tmp_path / "s.db")
    reader = SqliteStore(tmp_path / "s.db", read_only=True)
    writer.write([_point(0, 61, T0)])
    assert reader.count() == 1
    assert [v.value for v in reader.latest()] == [61]
