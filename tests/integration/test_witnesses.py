"""Witnesses as real processes: the ledger's checkpoints get cosigned; a forked ledger's do not."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.bundles import first_reading, proof_bundle_for
from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import decode_reading
from ledger.appends import EntryKey, NewEntry
from ledger.blocks import Block
from ledger.cosignature import CosignatureVerifier
from ledger.device_keys import REGISTERED, DeviceKeyStatement, key_entry_key
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteVerifier
from ledger.verifier import Policy, verify_bundle
from ledger.witnessing import Checkpointed, LedgerAccess, WitnessClient, WitnessEndpoint
from tests.servers import Mosquitto, free_port
from tests.stack import (
    RawPublisher,
    now_ms,
    register_devices,
    settings_for,
    signed,
    start_ingest,
    wait_until,
)
from vitaltrail.settings import WitnessSetting

pytestmark = pytest.mark.integration


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[tuple[str, CosignatureVerifier, Path]]:
    """`vitaltrail witness` in its own process, pinning a ledger key made for the test."""
    ledger_dir = tmp_path / "data"
    signer = load_or_create_signer(ledger_dir / "keys" / "ledger.key", "vitaltrail.local/ledger")
    witness_dir = tmp_path / "witness-data"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vitaltrail.cli",
            "--data-dir",
            str(witness_dir),
            "witness",
            "--name",
            "witness.test/w1",
            "--port",
            str(port),
            "--log-key",
            str(signer.verifier),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("witness witness.test/w1 for vitaltrail.local/ledger"), first
    key = CosignatureVerifier.parse((witness_dir / "witness" / "witness.pub").read_text())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while "add-checkpoint" not in proc.stdout.readline() and time.monotonic() < deadline:
        pass
    time.sleep(0.3)  # the server binds right after printing
    yield url, key, ledger_dir
    proc.terminate()
    assert proc.wait(10) == 0
    proc.stdout.close()


async def test_checkpoints_are_cosigned_and_a_forked_ledger_is_refused(
    mosquitto: Mosquitto,
    topic_root: str,
    witness: tuple[str, CosignatureVerifier, Path],
    tmp_path: Path,
) -> None:
    url, witness_key, data_dir = witness
    signers = register_devices(data_dir, 2)
    settings = settings_for(
        data_dir,
        mosquitto.port,
        topic_root,
        witnesses=[WitnessSetting(url=url, key=str(witness_key))],
        witness_quorum=1,
    )
    ingest = await start_ingest(settings)
    publisher = RawPublisher(mosquitto.port)
    for seq in range(20):
        for device_id, signer in signers.items():
            publisher.publish(readings_topic(topic_root, device_id), signed(device_id, signer, seq))
    publisher.close()
    ledger = ingest.runtime.ledger
    metrics = ingest.runtime.metrics
    await wait_until(
        lambda: ledger.sealed_size == 42, what="2 registrations and 40 readings sealed"
    )
    await wait_until(
        lambda: (
            metrics.sample("vitaltrail_witness_cosignatures_total", {"witness": witness_key.name})
            >= 1
        ),
        what="a cosignature",
    )
    await ingest.close()

    ledger_key = NoteVerifier.parse((data_dir / "keys" / "ledger.pub").read_text())
    policy = Policy(ledger_key, (witness_key,), 1)
    reader = LedgerReader(data_dir / "ledger.db")
    index = first_reading(reader)
    assert index is not None
    report = verify_bundle(proof_bundle_for(reader, index, cosignatures=1).to_json(), policy)
    assert report.ok, report.failed()
    assert [c.name for c in report.checks][:2] == ["checkpoint signature", "witness cosignatures"]
    witnessed = reader.blocks.latest_cosigned(1)
    assert witnessed is not None
    reader.close()

    honest_reader = LedgerReader(data_dir / "ledger.db")
    honest = [data for _, data in honest_reader.log.entries(0, witnessed.tree_size)]
    honest_reader.close()
    log_signer = load_or_create_signer(data_dir / "keys" / "ledger.key", settings.origin)
    device = DeviceSigner.generate()
    size = witnessed.tree_size

    # Fork 1: the same key, another history of the same length.
    same_size = [
        DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, "evil-1", device.key, "p-1").entry(
            now_ms()
        ),
        *(
            NewEntry(
                reading_key("evil-1", seq),
                LedgerEntry(EntryKind.READING, now_ms(), signed("evil-1", device, seq)).encode(),
            )
            for seq in range(size - 1)
        ),
    ]
    # Fork 2: the honest history with one reading rewritten, then grown.
    rewritten = [_keyed(data) for data in honest]
    rewritten[size - 1] = NewEntry(EntryKey("rewritten", 0), b"what the operator wishes it said")
    rewritten += [NewEntry(EntryKey("more", i), b"more") for i in range(5)]

    for name, entries in [("same-size", same_size), ("rewritten", rewritten)]:
        path = tmp_path / f"{name}.db"
        forked = Ledger(path, log_signer)
        forked.append(entries)
        block = forked.seal(now_ms())
        assert block is not None
        cosigned = await _present(forked, block, url, witness_key, claimed_size=size)
        forked.close()
        assert cosigned == [], f"the witness cosigned the {name} fork"
        reader = LedgerReader(path)
        bundle = proof_bundle_for(reader, first_reading(reader) or 0)
        report = verify_bundle(bundle.to_json(), policy)
        assert [c.name for c in report.failed()] == ["witness cosignatures"], name
        reader.close()
    state = sqlite3.connect(tmp_path / "witness-data" / "witness" / "state.db")
    refused = state.execute("SELECT status, reason FROM refused ORDER BY id").fetchall()
    state.close()
    assert [status for status, _ in refused] == [409, 422]  # a fork; an inconsistent history
    assert refused[1][1].startswith("not consistent")


def _keyed(data: bytes) -> NewEntry:
    """A copied leaf under the key the ledger gave it."""
    entry = LedgerEntry.decode(data)
    if entry.kind is EntryKind.READING:
        reading = decode_reading(parse_sign1(entry.body).payload)
        return NewEntry(reading_key(reading.device_id, reading.seq), data)
    return NewEntry(key_entry_key(DeviceKeyStatement.from_entry(entry).key.kid, REGISTERED), data)


async def _present(
    forked: Ledger, block: Block, url: str, key: CosignatureVerifier, claimed_size: int
) -> list[str]:
    """Submit a forked ledger's checkpoint as the operator would, from the size the witness saw."""

    async def witnessed_size(name: str) -> int:
        return claimed_size

    async def consistency_proof(old: int, new: int) -> list[bytes]:
        return forked.consistency_proof(old, new)

    async def store(height: int, name: str, line: str) -> None:
        forked.blocks.add_cosignature(height, name, line)

    client = WitnessClient([WitnessEndpoint(url, key)])
    try:
        return await client.cosign(
            Checkpointed(block.height, block.tree_size, block.note),
            LedgerAccess(witnessed_size, consistency_proof, store),
        )
    finally:
        await client.close()
