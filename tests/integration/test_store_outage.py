"""InfluxDB down for 30 s: the ingestor stops acknowledging, the broker keeps the readings,
and when InfluxDB is back every reading reaches the store and the ledger exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from devices.publisher import readings_topic
from ingest.influx_store import InfluxStore
from tests.servers import Mosquitto
from tests.stack import (
    RawPublisher,
    register_devices,
    settings_for,
    signed,
    start_ingest,
    wait_until,
)
from vitaltrail.influxdb import Influxd

pytestmark = pytest.mark.integration

OUTAGE_S = 30


async def test_no_reading_is_lost_while_influxdb_is_down(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str, tmp_path: Path
) -> None:
    influx = Influxd(tmp_path / "influxd").start()  # its own: this test stops it
    signers = register_devices(data_dir, 3)
    settings = settings_for(
        data_dir, mosquitto.port, topic_root, influx_url=influx.url, influx_database="outage"
    )
    ingest = await start_ingest(settings)
    store = InfluxStore(influx.url, "outage", read_only=True)
    publisher = RawPublisher(mosquitto.port)
    metrics = ingest.runtime.metrics
    seq = 0

    def publish(rounds: int) -> None:
        nonlocal seq
        for _ in range(rounds):
            for device_id, signer in signers.items():
                publisher.publish(
                    readings_topic(topic_root, device_id), signed(device_id, signer, seq)
                )
            seq += 1
        publisher.flush()

    try:
        publish(20)
        await wait_until(lambda: store.count() == 20 * 3 * 2, what="the first readings stored")

        influx.stop()
        down_since = time.monotonic()
        while time.monotonic() - down_since < OUTAGE_S:  # devices keep sending
            publish(5)
            await asyncio.sleep(1)
        assert metrics.sample("vitaltrail_ingest_interruptions_total", {"cause": "storage"}) >= 1
        influx.start()  # the same data directory and port

        publish(20)
        total = seq * 3
        await wait_until(
            lambda: store.count() == total * 2, timeout_s=60, what="every reading stored"
        )
        await wait_until(
            lambda: ingest.runtime.ledger.size == 3 + total, what="every reading logged"
        )
    finally:
        publisher.close()
        await ingest.close()
        store.close()
        influx.stop()
    # Readings logged in a batch whose store write failed came back from the broker and were
    # recognised as already logged: each counted once as accepted, then as redelivered.
    assert metrics.sample("vitaltrail_readings_accepted_total") == total
    assert metrics.sample("vitaltrail_readings_duplicate_total") > 0
