"""`vitaltrail bench store`: the dashboard's range query and raw writes, on SQLite and InfluxDB.

A ward's day at 1 Hz: ``--patients`` patients' heart rate, 86,400 samples each, written in
batches of 2,000 (the ingestor's batch) into each store; then the dashboard's range query -
24 h of one patient's heart rate downsampled to 1-minute buckets (1,440 of them) - timed
``--queries`` times, then again a month later when compaction has rolled the day up into
1-minute aggregates; and the ward page's "latest vitals of everyone". InfluxDB is a real
influxd started for the run with vitaltrail/influxdb.conf.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.vitals import HEART_RATE
from ingest.influx_store import InfluxStore
from ingest.sqlite_store import SqliteStore
from ingest.store import SamplePoint, TimeSeriesStore, wall_clock_ms
from vitaltrail.bench.ingest import machine, percentile
from vitaltrail.influxdb import Influxd

DAY_MS = 24 * 3600 * 1000
# A midnight (UTC), two days ago: influxd refuses samples older than its raw retention policy
# by its own clock, so the day must be recent.
T0 = wall_clock_ms() - wall_clock_ms() % DAY_MS - 2 * DAY_MS
MONTH_LATER = T0 + 30 * DAY_MS  # the day is then past the raw window


def _day(patients: int) -> list[list[SamplePoint]]:
    """Per second of the day, every patient's heart rate (batched as ingest batches them)."""
    batch: list[SamplePoint] = []
    batches: list[list[SamplePoint]] = []
    for second in range(DAY_MS // 1000):
        for p in range(patients):
            value = 60 + (second + p * 7) % 40
            batch.append(
                SamplePoint(
                    f"patient-{p:03d}",
                    f"band-{p:03d}",
                    second,
                    0,
                    second * patients + p,
                    HEART_RATE.code,
                    HEART_RATE.unit,
                    value,
                    T0 + second * 1000,
                )
            )
            if len(batch) == 2000:
                batches.append(batch)
                batch = []
    return [*batches, batch] if batch else batches


def _time_range_query(store: TimeSeriesStore, queries: int) -> list[float]:
    store.series("patient-000", HEART_RATE.code, T0, T0 + DAY_MS, 60_000)  # warm
    timings: list[float] = []
    for _ in range(queries):
        t = time.perf_counter()
        buckets = store.series("patient-000", HEART_RATE.code, T0, T0 + DAY_MS, 60_000)
        timings.append((time.perf_counter() - t) * 1000)
    assert len(buckets) == 1440
    assert sum(b.count for b in buckets) == 86_400
    return timings


def _measure(
    store: TimeSeriesStore,
    aged: TimeSeriesStore,
    batches: list[list[SamplePoint]],
    queries: int,
) -> dict[str, Any]:
    """``store`` sees the day as recent (raw samples answer) and compacts it; ``aged`` sees
    the same data a month later, when the 1-minute aggregates answer."""
    start = time.perf_counter()
    for batch in batches:
        store.write(batch)
    written = sum(len(b) for b in batches)
    write_s = time.perf_counter() - start
    range_ms = _time_range_query(store, queries)
    latest_ms: list[float] = []
    for _ in range(queries):
        t = time.perf_counter()
        store.latest()
        latest_ms.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    store.compact(T0 + DAY_MS + 60_000)  # the day's minutes rolled up (the ingestor does it
    compact_s = time.perf_counter() - t  # every minute; here all at once)
    aged_ms = _time_range_query(aged, queries)
    return {
        "points": written,
        "write_points_per_s": written / write_s,
        "range_query_ms": {"p50": percentile(range_ms, 50), "p99": percentile(range_ms, 99)},
        "compact_s": compact_s,
        "aged_range_query_ms": {"p50": percentile(aged_ms, 50), "p99": percentile(aged_ms, 99)},
        "latest_all_ms": {"p50": percentile(latest_ms, 50), "p99": percentile(latest_ms, 99)},
    }


def run_bench_store(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": f"vitaltrail bench store --patients {args.patients} --queries {args.queries}",
    }
    print(f"machine: {report['machine']}")
    batches = _day(args.patients)
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-store-") as tmp:
        work = Path(tmp)
        sqlite = SqliteStore(work / "store.db", clock=lambda: T0 + DAY_MS)
        aged_sqlite = SqliteStore(work / "store.db", clock=lambda: MONTH_LATER)
        report["sqlite"] = _measure(sqlite, aged_sqlite, batches, args.queries)
        sqlite.close()
        aged_sqlite.close()
        influxd = Influxd(work / "influxd").start()
        try:
            influx = InfluxStore(influxd.url, "bench", clock=lambda: T0 + DAY_MS)
            aged_influx = InfluxStore(influxd.url, "bench", clock=lambda: MONTH_LATER)
            report["influxdb"] = _measure(influx, aged_influx, batches, args.queries)
            influx.close()
            aged_influx.close()
        finally:
            influxd.stop()
    for name in ("sqlite", "influxdb"):
        r = report[name]
        print(
            f"{name}: wrote {r['points']:,} points at {r['write_points_per_s']:,.0f}/s; 24 h at 1 Hz"
            f" -> 1-min buckets p50 {r['range_query_ms']['p50']:.1f} ms p99"
            f" {r['range_query_ms']['p99']:.1f} ms raw, p50 {r['aged_range_query_ms']['p50']:.1f} ms"
            f" from minute aggregates (roll-up {r['compact_s']:.1f} s); latest of all p50"
            f" {r['latest_all_ms']['p50']:.1f} ms"
        )
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0
