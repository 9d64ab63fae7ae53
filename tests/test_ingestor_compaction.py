"""The ingestor compacts its store on a timer, broker or not."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from ingest.store import SamplePoint
from tests.stack import now_ms, wait_until
from vitaltrail.mosquitto import free_port
from vitaltrail.runtime import build_ingest, open_store
from vitaltrail.settings import Settings


async def test_the_ingestor_rolls_up_and_expires_raw_samples(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        mqtt_port=free_port(),  # nothing listens: ingest retries, compaction goes on
        check_workers=0,
        store_raw_retention_days=120 / 86_400,  # two minutes
    )
    runtime = build_ingest(settings)
    ingestor = runtime.ingestor
    ingestor.config = dataclasses.replace(ingestor.config, compact_interval_s=0.05)
    old = now_ms() - 10 * 60_000
    old -= old % 60_000
    runtime.store.write(
        [
            SamplePoint("p1", "band", i, 0, i, "8867-4", "/min", 70 + i, old + i * 1000)
            for i in range(60)
        ]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    try:
        await wait_until(lambda: runtime.store.count() == 0, 10, "old raw samples dropped")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        runtime.close()
    store = open_store(settings, read_only=True)
    (minute,) = store.series("p1", "8867-4", old, old + 60_000, 60_000)  # from the aggregates
    store.close()
    assert (minute.count, minute.low, minute.high) == (60, 70, 129)
