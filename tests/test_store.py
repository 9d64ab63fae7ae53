"""The time-series store, on SQLite and on a real influxd: idempotent writes, latest values,
downsampled ranges."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.store import SamplePoint, TimeSeriesStore, wall_clock_ms
from tests.conftest import StoreFactory

# The stores' clock in these tests: a minute boundary, now - influxd drops points older than
# its raw retention policy by its own clock, so the samples are recent.
NOW = wall_clock_ms() - wall_clock_ms() % 60_000
T0 = NOW - 3_600_000  # an hour before


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


def _expected(
    points: list[SamplePoint], start: int, width: int
) -> list[tuple[int, int, float, float]]:
    """``(start, count, low, high)`` of each bucket, computed here from the samples."""
    buckets: dict[int, list[float]] = {}
    for p in points:
        buckets.setdefault(start + (p.time_ms - start) // width * width, []).append(p.value)
    return [(t, len(v), min(v), max(v)) for t, v in sorted(buckets.items())]


def test_old_raw_samples_give_way_to_minute_aggregates(store_factory: StoreFactory) -> None:
    """Raw kept for 30 minutes: ranges reaching past it are answered from the 1-minute
    aggregates, with the figures the samples give; a late sample re-rolls its minute."""
    store = _open(store_factory, raw_retention_ms=30 * 60_000)
    points = [_point(i, 60 + i % 13, T0 + i * 1000) for i in range(3600)]  # an hour at 1 Hz
    store.write(points)
    recent = store.series("p1", "8867-4", NOW - 600_000, NOW, 10_000)  # 10-s buckets: raw
    assert [(b.start_ms, b.count, b.low, b.high) for b in recent] == _expected(
        points[3000:], NOW - 600_000, 10_000
    )
    store.compact(NOW)
    # The older half is raw no more: SQLite dropped it when compacting; InfluxDB never took it
    # raw (its raw policy would refuse it) and folded it into its minutes on write.
    assert store.count() == 1800
    after = store.series("p1", "8867-4", T0, T0 + 3_600_000, 300_000)  # 5-min buckets
    assert [(b.start_ms, b.count, b.low, b.high) for b in after] == _expected(points, T0, 300_000)
    means = [sum(p.value for p in points[i : i + 300]) / 300 for i in range(0, 3600, 300)]
    assert [b.mean for b in after] == pytest.approx(means)
    assert store.series("p1", "8867-4", NOW - 600_000, NOW, 10_000) == recent
    store.write([_point(9000, 200, NOW - 1_200_000 + 500)])  # late, into a rolled-up minute
    store.compact(NOW)
    (minute,) = store.series("p1", "8867-4", NOW - 1_200_000, NOW - 1_140_000, 300_000)
    assert (minute.count, minute.high) == (61, 200)


def test_samples_past_the_raw_window_written_twice_count_once(store_factory: StoreFactory) -> None:
    """What a reindex of an old ledger writes: samples whose minutes are past the raw window,
    in batches that split a minute - and then all of them again. Each minute counts each
    sample once."""
    store = _open(store_factory, raw_retention_ms=30 * 60_000)
    old = [_point(i, 50 + i % 7, T0 + i * 1000) for i in range(150)]  # 2.5 minutes, an hour ago
    for _ in range(2):
        store.write(old[:90])  # splits the second minute
        store.write(old[90:])
        store.compact(NOW)
        buckets = store.series("p1", "8867-4", T0, T0 + 180_000, 60_000)
        assert [(b.start_ms, b.count, b.low, b.high) for b in buckets] == _expected(old, T0, 60_000)
