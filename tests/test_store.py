"""The time-series store, on SQLite and on a real influxd: idempotent writes, latest values,
downsampled ranges."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.store import SamplePoint, TimeSeriesStore
from tests.conftest import StoreFactory

T0 = 1_763_700_000_000  # a minute boundary
NOW = T0 + 3_600_000  # the stores' clock in these tests: an hour after T0


def _open(factory: StoreFactory, **options: Any) -> TimeSeriesStore:
    return factory(clock=lambda: NOW, **options)


def _point(
    seq: int, value: float, t: int, patient: str = "p1", code: str = "8867-4"
) -> SamplePoint:
    return SamplePoint(patient, f"{patient}-band", seq, 0, seq, code, "/min", value, t)


def test_writes_are_idempotent_and_latest_keeps_the_newest(store_factory: StoreFactory) -> None:
    store = _open(store_factory)
    store.write([_point(1, 70, T0 + 1000), _point(0, 60, T0)])
    store.write([_point(1, 70, T0 + 1000)])  # redelivery
    store.write([_point(0, 60, T0)])  # an older reading replayed late must not win
    assert store.count() == 2
    (latest,) = store.latest("p1")
    assert (latest.value, latest.time_ms) == (70, T0 + 1000)
    assert store.patients() == ["p1"]


def test_series_downsamples_into_buckets(store_factory: StoreFactory) -> None:
    store = _open(store_factory)
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


def test_a_read_only_view_sees_committed_writes(store_factory: StoreFactory) -> None:
    writer = _open(store_factory)
    reader = _open(store_factory, read_only=True)
    writer.write([_point(0, 61, T0)])
    assert reader.count() == 1
    assert [v.value for v in reader.latest()] == [61]


def test_latest_covers_every_patient_and_vital_in_order(store_factory: StoreFactory) -> None:
    store = _open(store_factory)
    store.write(
        [
            _point(0, 98, T0, patient="p2", code="59408-5"),
            _point(1, 71, T0 + 5, patient="p2"),
            _point(0, 36.9, T0, patient="p1", code="8310-5"),
            _point(2, 72.5, T0 + 9, patient="p1"),
        ]
    )
    assert [(v.patient_id, v.code, v.value, v.entry_index) for v in store.latest()] == [
        ("p1", "8310-5", 36.9, 0),
        ("p1", "8867-4", 72.5, 2),
        ("p2", "59408-5", 98, 0),
        ("p2", "8867-4", 71, 1),
    ]
    assert store.patients() == ["p1", "p2"]
    assert store.latest("nobody") == []


def test_two_samples_in_one_millisecond_stay_two(store_factory: StoreFactory) -> None:
    store = _open(store_factory)
    store.write([_point(5, 70, T0), _point(6, 71, T0)])
    assert store.count() == 2
    (bucket,) = store.series("p1", "8867-4", T0, T0 + 1, 1000)
    assert (bucket.count, bucket.low, bucket.high) == (2, 70, 71)


def test_hostile_ids_are_data_not_query(store_factory: StoreFactory) -> None:
    store = _open(store_factory)
    store.write([_point(0, 70, T0)])
    for evil in ["p1' OR '1'='1", 'p1" OR 1=1', "p1\\", "p1; DROP DATABASE x"]:
        assert store.latest(evil) == []
        assert store.series(evil, "8867-4", T0, T0 + 1000, 1000) == []
    assert store.count() == 1


def test_old_raw_samples_give_way_to_minute_aggregates(store_factory: StoreFactory) -> None:
    """Raw kept for 30 minutes: older ranges are answered from the 1-minute aggregates, with
    the figures the raw samples gave; a late sample re-rolls its minute."""
    store = _open(store_factory, raw_retention_ms=30 * 60_000)
    store.write([_point(i, 60 + i % 13, T0 + i * 1000) for i in range(3600)])  # an hour at 1 Hz
    everything_raw = _open(store_factory, read_only=True, raw_retention_ms=10**12)
    before = everything_raw.series("p1", "8867-4", T0, T0 + 3_600_000, 300_000)  # 5-min buckets
    assert sum(b.count for b in before) == 3600
    recent = store.series("p1", "8867-4", NOW - 600_000, NOW, 10_000)  # 10-s buckets: raw
    store.compact(NOW)
    assert store.count() == 1800  # the older half of the raw samples is gone
    after = store.series("p1", "8867-4", T0, T0 + 3_600_000, 300_000)
    assert [(b.start_ms, b.count, b.low, b.high) for b in after] == [
        (b.start_ms, b.count, b.low, b.high) for b in before
    ]
    assert [b.mean for b in after] == pytest.approx([b.mean for b in before])
    assert store.series("p1", "8867-4", NOW - 600_000, NOW, 10_000) == recent
    store.write([_point(9000, 200, NOW - 1_200_000 + 500)])  # late, into a rolled-up minute
    store.compact(NOW)
    (minute,) = store.series("p1", "8867-4", NOW - 1_200_000, NOW - 1_140_000, 300_000)
    assert (minute.count, minute.high) == (61, 200)
