"""InfluxDB specifics: line protocol escaping, and InfluxDB 2's compatibility mode (a token)."""

from __future__ import annotations

import uuid

from ingest.influx_store import InfluxStore, line
from ingest.store import SamplePoint
from vitaltrail.influxdb import Influxd

T0 = 1_763_700_000_000


def _point(seq: int, t: int, unit: str = "/min") -> SamplePoint:
    return SamplePoint("p 1,x=y", "band-1", seq, 2, seq, "8867-4", unit, 70.5, t)


def test_line_protocol_escapes_tags_and_strings() -> None:
    text = line(_point(1001, T0, unit='m"g\\dL'))
    assert text.startswith("vitals,code=8867-4,device=band-1,patient=p\\ 1\\,x\\=y value=70.5,")
    assert 'unit="m\\"g\\\\dL"' in text
    assert text.endswith(f" {T0 * 1_000_000 + 1000 + 2}")  # seq 1001 -> offset 1,000 ns, + pos


def test_a_token_store_writes_and_reads_but_leaves_retention_to_influxdb(influxd: Influxd) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"
    InfluxStore(influxd.url, database).close()  # InfluxDB 2's setup would make the bucket
    store = InfluxStore(influxd.url, database, token="a-token", clock=lambda: T0 + 86_400_000 * 30)
    try:
        assert not store.compacts
        store.write([_point(i, T0 + i * 1000) for i in range(120)])
        store.compact(T0 + 86_400_000 * 30)  # a no-op: no SELECT INTO / DELETE in 2.x's 1.x API
        assert store.count() == 120
        buckets = store.series("p 1,x=y", "8867-4", T0, T0 + 120_000, 60_000)  # old: raw anyway
        assert [b.count for b in buckets] == [60, 60]
    finally:
        store.close()
