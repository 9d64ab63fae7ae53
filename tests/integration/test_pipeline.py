"""The pipeline against a real Mosquitto: exactly-once recording, sealing, proofs, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cbor2
import pytest

from dashboards.bundles import proof_bundle_for
from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.publisher import BrokerAddress, DevicePublisher, PublisherConfig, readings_topic
from devices.reading import decode_reading
from devices.registry import DeviceRegistry
from ingest.device_status import DeviceStatusStore
from ingest.quarantine import Quarantine
from ingest.reasons import Reason
from ingest.sqlite_store import SqliteStore
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader
from ledger.note import NoteVerifier
from ledger.verifier import verify_bundle
from tests.servers import Mosquitto
from tests.stack import (
    RawPublisher,
    now_ms,
    register_devices,
    settings_for,
    signed,
    start_ingest,
    vitals,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_n_devices_m_readings_are_recorded_once_sealed_and_provable(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str, tmp_path: Path
) -> None:
    n_devices, m_readings = 6, 40
    signers = register_devices(data_dir, n_devices)
    ingest = await start_ingest(settings_for(data_dir, mosquitto.port, topic_root))
    ledger = ingest.runtime.ledger
    publishers = [
        DevicePublisher(
            device_id,
            signer,
            Outbox(tmp_path / "outbox.db", device_id),
            BrokerAddress(port=mosquitto.port),
            PublisherConfig(topic_root=topic_root),
        )
        for device_id, signer in signers.items()
    ]
    senders = [asyncio.create_task(p.run()) for p in publishers]
    for i in range(m_readings):
        for p in publishers:
            p.submit(vitals(), battery_pct=100 - i)  # the device SDK signs its battery too
    await asyncio.wait_for(asyncio.gather(*(p.drained() for p in publishers)), 30)
    total = n_devices * m_readings
    size = n_devices + total  # each device's key registration, then its readings
    await wait_until(lambda: ledger.sealed_size == size, what="every reading sealed")
    for task in senders:
        task.cancel()
    await ingest.close()

    reader = LedgerReader(data_dir / "ledger.db")
    key = NoteVerifier.parse((data_dir / "keys" / "ledger.pub").read_text())
    seen = set()
    kinds = [LedgerEntry.decode(data).kind for _, data in reader.log.entries(0, size)]
    assert kinds == [EntryKind.DEVICE_REGISTERED] * n_devices + [EntryKind.READING] * total
    for index, data in reader.log.entries(n_devices, size):
        reading = decode_reading(parse_sign1(LedgerEntry.decode(data).body).payload)
        seen.add((reading.device_id, reading.seq))
        report = verify_bundle(proof_bundle_for(reader, index).to_json(), key)
        assert report.ok, report.failed()
    assert reader.log.stored_size() == size
    assert seen == {(d, s) for d in signers for s in range(m_readings)}
    store = SqliteStore(data_dir / "store.db", read_only=True)
    assert store.count() == total * 2  # two samples per reading, each stored once
    assert {v.patient_id for v in store.latest()} == {f"patient-{d}" for d in signers}
    assert ingest.runtime.metrics.sample("vitaltrail_readings_accepted_total") == total
    status = DeviceStatusStore(data_dir / "device-status.db")
    states = status.statuses(now_ms(), 60_000)
    status.close()
    assert {d: s.battery_pct for d, s in states.items()} == dict.fromkeys(
        signers, 100 - m_readings + 1
    )
    assert all(s.last_seen_ms is not None and s.signature_failures == 0 for s in states.values())
    store.close()
    reader.close()


async def test_every_bad_input_class_is_quarantined_and_counted_while_good_readings_flow(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str
) -> None:
    signers = register_devices(data_dir, 3)
    (good_id, good), (other_id, _), (revoked_id, revoked) = signers.items()
    registry = DeviceRegistry(data_dir / "registry.db")
    registry.revoke(revoked_id)
    registry.close()
    ingest = await start_ingest(settings_for(data_dir, mosquitto.port, topic_root))
    topic = readings_topic(topic_root, good_id)
    stranger = DeviceSigner.generate()
    valid = signed(good_id, good, 0)
    flipped = bytearray(valid)
    flipped[-5] ^= 0xFF
    now = now_ms()
    bad: list[tuple[Reason, str, bytes]] = [
        (Reason.OVERSIZE, topic, b"\x00" * 8500),
        (Reason.MALFORMED_COSE, topic, b'{"hr": 72}'),
        (Reason.MALFORMED_COSE, topic, cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))),
        (Reason.UNKNOWN_DEVICE, topic, signed(good_id, stranger, 1)),
        (
            Reason.REVOKED_DEVICE,
            readings_topic(topic_root, revoked_id),
            signed(revoked_id, revoked, 0),
        ),
        (Reason.BAD_SIGNATURE, topic, bytes(flipped)),
        (Reason.DEVICE_MISMATCH, topic, signed(other_id, good, 2)),
        (Reason.TOPIC_MISMATCH, readings_topic(topic_root, other_id), signed(good_id, good, 3)),
        (
            Reason.TOPIC_MISMATCH,
            readings_topic(topic_root, "evil$%20device"),
            signed(good_id, good, 4),
        ),
        (Reason.IMPLAUSIBLE_VALUE, topic, signed(good_id, good, 5, vitals(hr=900))),
        (Reason.FUTURE_TIMESTAMP, topic, signed(good_id, good, 6, vitals(time_ms=now + 3_600_000))),
        (
            Reason.STALE_TIMESTAMP,
            topic,
            signed(good_id, good, 7, vitals(time_ms=now - 30 * 86_400_000)),
        ),
        (Reason.SEQUENCE_CONFLICT, topic, signed(good_id, good, 0, vitals(hr=99))),
    ]
    publisher = RawPublisher(mosquitto.port)
    publisher.publish(topic, valid)
    publisher.flush()
    ledger = ingest.runtime.ledger
    keys = 4  # three registrations and a revocation are logged before any reading
    await wait_until(lambda: ledger.size == keys + 1, what="the first good reading")
    for i, (_, bad_topic, payload) in enumerate(bad):
        publisher.publish(bad_topic, payload)
        publisher.publish(topic, signed(good_id, good, 100 + i))  # good ones keep flowing between
    publisher.publish(topic, valid)  # a redelivery-like replay: harmless
    publisher.close()
    metrics = ingest.runtime.metrics
    expected: dict[str, int] = {}
    for reason, _, _ in bad:
        expected[reason.value] = expected.get(reason.value, 0) + 1
    await wait_until(
        lambda: (
            sum(metrics.rejected_count(r) for r in Reason) == len(bad)
            and ledger.size == keys + 1 + len(bad)
            and metrics.sample("vitaltrail_readings_duplicate_total") == 1
        ),
        what="every message handled",
    )
    await ingest.close()
    for reason in Reason:
        assert metrics.rejected_count(reason) == expected.get(reason.value, 0), reason
    q = Quarantine(data_dir / "quarantine.db", read_only=True)
    assert q.counts() == expected
    kept = {r.payload for r in q.recent(100)}
    q.close()
    for reason, _, payload in bad:
        if reason is not Reason.OVERSIZE:
            assert payload in kept, f"raw bytes of the {reason} message were not kept"
