"""An ingestor killed with SIGKILL mid-stream and restarted loses and duplicates nothing."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from devices.cose import parse_sign1
from devices.publisher import readings_topic
from devices.reading import decode_reading
from ingest.sqlite_store import SqliteStore
from ledger.entries import LedgerEntry
from ledger.ledger import LedgerReader
from tests.servers import Mosquitto
from tests.stack import RawPublisher, ingest_process, register_devices, signed, wait_for

pytestmark = pytest.mark.integration


def _ingestor(data_dir: Path, port: int, topic_root: str) -> subprocess.Popen[bytes]:
    return ingest_process(data_dir, port, topic_root, "ingest-crash-test", share_group="crash")


def _ledger_size(data_dir: Path) -> int:
    if not (data_dir / "ledger.db").exists():
        return 0
    reader = LedgerReader(data_dir / "ledger.db")
    try:
        return reader.log.stored_size()
    finally:
        reader.close()


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str
) -> None:
    devices, per_device = 5, 800
    total = devices * per_device
    size = devices + total  # the devices' key registrations come first
    signers = register_devices(data_dir, devices)
    ingestor = _ingestor(data_dir, mosquitto.port, topic_root)
    wait_for(lambda: (data_dir / "ledger.db").exists(), 15)
    time.sleep(0.5)  # subscribed
    publisher = RawPublisher(mosquitto.port)
    for seq in range(per_device):
        for device_id, signer in signers.items():
            publisher.publish(readings_topic(topic_root, device_id), signed(device_id, signer, seq))
        if seq % 50 == 0:
            publisher.flush()
            time.sleep(0.05)
        if seq == per_device // 3:
            wait_for(lambda: _ledger_size(data_dir) > devices, 15)
            ingestor.send_signal(signal.SIGKILL)
            ingestor.wait()
            size_at_kill = _ledger_size(data_dir)
            ingestor = _ingestor(data_dir, mosquitto.port, topic_root)
    publisher.close()
    try:
        wait_for(lambda: _ledger_size(data_dir) >= size, 60)
        time.sleep(0.5)  # anything extra would show up now
    finally:
        ingestor.send_signal(signal.SIGTERM)
        assert ingestor.wait(timeout=30) == 0, "the ingestor did not shut down cleanly"

    assert devices < size_at_kill < size, "the kill did not happen mid-stream"
    reader = LedgerReader(data_dir / "ledger.db")
    assert reader.log.stored_size() == size
    recorded = [
        (r.device_id, r.seq)
        for _, data in reader.log.entries(devices, size)
        for r in [decode_reading(parse_sign1(LedgerEntry.decode(data).body).payload)]
    ]
    assert len(recorded) == total
    assert set(recorded) == {(d, s) for d in signers for s in range(per_device)}
    block = reader.blocks.latest()
    assert block is not None
    assert block.tree_size == size, "the graceful stop sealed everything"
    reader.close()
    store = SqliteStore(data_dir / "store.db", read_only=True)
    assert store.count() == total * 2
    store.close()
