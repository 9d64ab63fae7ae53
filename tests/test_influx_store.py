"""InfluxDB specifics, on a real influxd: line protocol escaping; the two retention policies;
compaction through only what InfluxDB 2.x/3.x's v1-compatible API also serves; raw samples
expired by influxd's own retention, the aggregates kept."""

from __future__ import annotations

import re
import uuid

import httpx2

from ingest.influx_lines import line
from ingest.influx_store import InfluxStore
from ingest.store import MINUTE_MS, SamplePoint, wall_clock_ms
from tests.stack import wait_for
from vitaltrail.influxdb import Influxd

HOUR_MS = 3_600_000
NOW = wall_clock_ms() - wall_clock_ms() % MINUTE_MS  # influxd's retention runs on its clock
T0 = NOW - HOUR_MS


def _point(seq: int, t: int, unit: str = "/min", value: float = 70.5) -> SamplePoint:
    return SamplePoint("p 1,x=y", "band-1", seq, 2, seq, "8867-4", unit, value, t)


def _database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _influxql(influxd: Influxd, database: str, statement: str) -> list[list[object]]:
    answer = httpx2.post(
        influxd.url + "/query", params={"db": database, "q": statement}, timeout=10
    ).json()
    (result,) = answer["results"]
    assert "error" not in result, result
    return [row for s in result.get("series", []) for row in s["values"]]


class V1CompatGate(httpx2.BaseTransport):
    """Passes to influxd only what InfluxDB 2.x/3.x's v1-compatible API serves too, and
    refuses the rest as they do: no SELECT INTO, DELETE, DROP, nor schema statements."""

    LACKING = re.compile(r"\b(INTO|DELETE|DROP|CREATE|ALTER)\b", re.IGNORECASE)

    def __init__(self) -> None:
        self._influxd = httpx2.HTTPTransport()
        self.statements: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        statement = request.url.params.get("q", "")
        if statement:
            self.statements.append(statement)
        if self.LACKING.search(statement):
            return httpx2.Response(400, json={"error": "not supported by the v1 API"})
        if request.url.path == "/write" and "rp" not in request.url.params:
            return httpx2.Response(400, json={"error": "no rp: which bucket?"})
        return self._influxd.handle_request(request)

    def close(self) -> None:
        self._influxd.close()


def test_line_protocol_escapes_tags_and_strings() -> None:
    text = line(_point(1001, T0, unit='m"g\\dL'))
    assert text.startswith("vitals,code=8867-4,device=band-1,patient=p\\ 1\\,x\\=y value=70.5,")
    assert 'unit="m\\"g\\\\dL"' in text
    assert text.endswith(f" {T0 * 1_000_000 + 1000 + 2}")  # seq 1001 -> offset 1,000 ns, + pos


def test_a_writer_makes_the_raw_and_aggregates_policies(influxd: Influxd) -> None:
    database = _database()
    InfluxStore(influxd.url, database, raw_retention_ms=14 * 24 * HOUR_MS).close()
    policies = {
        name: (duration, default)
        for name, duration, _, _, default in _influxql(influxd, database, "SHOW RETENTION POLICIES")
    }
    assert policies["raw"] == ("337h0m0s", True)  # the window and an hour of slack; the default
    assert policies["aggregates"] == ("0s", False)  # kept for good
    InfluxStore(influxd.url, database, raw_retention_ms=2 * 24 * HOUR_MS).close()  # another window
    durations = {row[0]: row[1] for row in _influxql(influxd, database, "SHOW RETENTION POLICIES")}
    assert durations["raw"] == "49h0m0s"


def test_compaction_works_through_the_v1_compatible_api_alone(influxd: Influxd) -> None:
    """A store with a token (InfluxDB 2.x/3.x) behind a gate that refuses SELECT INTO, DELETE
    and schema statements: it still rolls minutes up, re-rolls a late one, and answers ranges
    past the raw window from the aggregates."""
    database = _database()
    InfluxStore(influxd.url, database).close()  # on 2.x: the buckets and DBRP mappings
    gate = V1CompatGate()
    store = InfluxStore(
        influxd.url,
        database,
        token="a-token",
        transport=gate,
        raw_retention_ms=30 * 60_000,
        clock=lambda: NOW,
    )
    try:
        points = [_point(i, T0 + 1800_000 + i * 1000, value=60 + i % 9) for i in range(1800)]
        store.write(points)  # the last half hour: raw
        store.compact(NOW)
        store.write([_point(5000, T0 + 1800_000 + 30, value=200)])  # late, in a rolled minute
        store.compact(NOW)
        reading_later = InfluxStore(  # an hour later: the range is past the raw window
            influxd.url,
            database,
            read_only=True,
            raw_retention_ms=30 * 60_000,
            clock=lambda: NOW + HOUR_MS,
        )
        buckets = reading_later.series("p 1,x=y", "8867-4", T0 + 1800_000, NOW, 600_000)
        reading_later.close()
        assert [(b.count, b.low, b.high) for b in buckets] == [
            (601, 60, 200),
            (600, 60, 68),
            (600, 60, 68),
        ]
        assert store.count() == 1801  # nothing deleted: raw expiry is influxd's
        assert not any(V1CompatGate.LACKING.search(s) for s in gate.statements)
        assert any("GROUP BY time(1m)" in s for s in gate.statements)
    finally:
        store.close()


def test_raw_samples_expire_by_the_raw_policy_and_the_minutes_stay(influxd: Influxd) -> None:
    """influxd, not the store, drops raw samples past the policy's duration; the minute
    aggregates, in the policy kept for good, still answer for them."""
    database = _database()
    store = InfluxStore(influxd.url, database, raw_retention_ms=3 * HOUR_MS, clock=lambda: NOW)
    start = NOW - 150 * 60_000  # 2.5 h ago, inside the 4-h raw policy
    try:
        store.write([_point(i, start + i * 1000, value=50 + i % 11) for i in range(600)])
        store.compact(NOW)
        assert store.count() == 600
        # Time passing, quickly: the raw policy is shortened to an hour, so those samples are
        # now past it. influxd's retention service drops their shard groups (every second in
        # the tests' configuration).
        _influxql(influxd, database, f'ALTER RETENTION POLICY "raw" ON "{database}" DURATION 1h')
        wait_for(lambda: store.count() == 0, 20, "influxd expiring the raw samples")
    finally:
        store.close()
    later = InfluxStore(influxd.url, database, read_only=True, raw_retention_ms=HOUR_MS)
    try:
        buckets = later.series("p 1,x=y", "8867-4", start, start + 600_000, 60_000)
    finally:
        later.close()
    assert [(b.count, b.low, b.high) for b in buckets] == [(60, 50, 60)] * 10


def test_samples_influxd_refuses_as_too_old_are_counted_not_fatal(influxd: Influxd) -> None:
    """A store whose clock is hours behind influxd's: a sample it still counts as raw is past
    influxd's raw policy. The write goes on with the others; the refused ones are counted."""
    database = _database()
    store = InfluxStore(
        influxd.url, database, raw_retention_ms=HOUR_MS, clock=lambda: NOW - 3 * HOUR_MS
    )
    try:
        store.write([_point(1, NOW - 3 * HOUR_MS), _point(2, NOW - 3 * HOUR_MS + 1000)])
        store.write([_point(3, NOW)])
        assert store.dropped_samples == 2  # older than influxd's 2-h raw policy
        assert store.count() == 1
    finally:
        store.close()


def test_late_samples_from_before_a_restart_are_rolled_up_again_a_slice_at_a_time(
    influxd: Influxd,
) -> None:
    """A late sample written just before the writer stopped (its mark died with the
    process): the next process rolls the raw window up again, six hours of it per
    compaction, and so reaches that minute at its second compaction."""
    database = _database()
    window = 13 * HOUR_MS  # re-rolled in slices [-13 h, -7 h), [-7 h, -1 h), [-1 h, now)
    minute = NOW - 2 * HOUR_MS
    before = InfluxStore(influxd.url, database, raw_retention_ms=window, clock=lambda: NOW)
    before.write([_point(i, minute + i * 1000, value=60) for i in range(60)])
    before.compact(NOW)
    before.write([_point(999, minute + 500, value=180)])  # late; then the process ends
    before.close()
    after = InfluxStore(influxd.url, database, raw_retention_ms=window, clock=lambda: NOW)
    reader = InfluxStore(  # a window later: the aggregates answer for that minute
        influxd.url, database, read_only=True, raw_retention_ms=window, clock=lambda: NOW + window
    )
    try:
        counts = []
        for _ in range(3):
            after.compact(NOW)
            (bucket,) = reader.series("p 1,x=y", "8867-4", minute, minute + 60_000, 60_000)
            counts.append((bucket.count, bucket.high))
        assert counts == [(60, 60), (61, 180), (61, 180)]
    finally:
        after.close()
        reader.close()
