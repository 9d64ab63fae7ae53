"""Two ingestor processes on one shared subscription and one PostgreSQL ledger: every reading
recorded exactly once, through a SIGKILL of one of them, and the log audits clean."""

from __future__ import annotations

import shutil
import signal
import subprocess
from functools import partial
from pathlib import Path

import psycopg
import pytest

from devices.cose import parse_sign1
from devices.publisher import readings_topic
from devices.reading import decode_reading
from ledger.audit import audit
from ledger.entries import EntryKind, LedgerEntry
from ledger.keyfile import load_or_create_signer
from ledger.ledger import LedgerReader
from ledger.note import NoteVerifier
from tests.postgres import Postgres
from tests.servers import Mosquitto
from tests.stack import (
    RawPublisher,
    ingest_process,
    register_devices,
    signed,
    subscribed,
    wait_for,
)
from vitaltrail.settings import Settings

pytestmark = pytest.mark.integration


def _stored(dsn: str) -> int:
    """Entries in the shared log; -1 until an ingestor has created it."""
    reader = LedgerReader(dsn)
    try:
        return reader.log.stored_size()
    except psycopg.errors.UndefinedTable:
        return -1
    finally:
        reader.close()


def test_two_ingestors_share_the_subscription_and_the_log(
    mosquitto: Mosquitto, postgres: Postgres, data_dir: Path, topic_root: str
) -> None:
    dsn = postgres.create_database()
    devices, per_device = 4, 300
    signers = register_devices(data_dir, devices)
    load_or_create_signer(data_dir / "keys" / "ledger.key", Settings().origin)
    # Each ingestor keeps its own store and quarantine; the log is shared. Both are provisioned
    # with the same registry and the log's signing key.
    nodes = {name: data_dir.parent / name for name in ("ingest-a", "ingest-b")}
    for node in nodes.values():
        shutil.copytree(data_dir, node / "data")
    shared = {"ledger_url": dsn, "share_group": "pair", "check_workers": "0"}

    def start(name: str) -> subprocess.Popen[bytes]:
        return ingest_process(nodes[name] / "data", mosquitto.port, topic_root, name, **shared)

    procs = {name: start(name) for name in nodes}
    publisher = RawPublisher(mosquitto.port)

    def leads(name: str) -> bool:
        log = nodes[name] / f"{name}.log"
        return "now the log's sequencer" in log.read_text(errors="replace")

    def publish(seqs: range) -> None:
        for seq in seqs:
            for device_id, signer in signers.items():
                publisher.publish(
                    readings_topic(topic_root, device_id), signed(device_id, signer, seq)
                )
        publisher.flush()

    try:
        for name, node in nodes.items():
            wait_for(partial(subscribed, node / "data", name), 15, f"{name} to subscribe")
        publish(range(0, 100))
        wait_for(lambda: _stored(dsn) > devices + 200, 30, "the first readings")
        (leader,) = [name for name in nodes if leads(name)]
        (feeder,) = set(nodes) - {leader}
        procs[leader].send_signal(signal.SIGKILL)  # the sequencer dies mid-stream
        procs[leader].wait()
        publish(range(100, per_device))
        wait_for(partial(leads, feeder), 15, "the feeder to take over as sequencer")
        (nodes[leader] / f"{leader}.log").unlink()
        procs[leader] = start(leader)  # its session's unacknowledged messages come back to it
        total = devices + devices * per_device
        wait_for(lambda: _stored(dsn) >= total, 60, "every reading")
    finally:
        publisher.close()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in procs.values()]
        assert codes == [0, 0], "an ingestor did not stop cleanly"

    reader = LedgerReader(dsn)
    assert reader.log.stored_size() == total
    kinds = [LedgerEntry.decode(d).kind for _, d in reader.log.entries(0, total)]
    assert kinds.count(EntryKind.DEVICE_REGISTERED) == devices
    readings = [
        (r.device_id, r.seq)
        for _, d in reader.log.entries(0, total)
        if LedgerEntry.decode(d).kind is EntryKind.READING
        for r in [decode_reading(parse_sign1(LedgerEntry.decode(d).body).payload)]
    ]
    assert sorted(readings) == sorted((d, s) for d in signers for s in range(per_device))
    key = NoteVerifier.parse((data_dir / "keys" / "ledger.pub").read_text())
    report = audit(reader, key)
    assert report.ok, report.findings[:3]
    latest = reader.blocks.latest()
    assert latest is not None
    assert latest.tree_size == total, "the last one to stop sealed everything"
    reader.close()
