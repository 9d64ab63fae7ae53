"""The durable half of ingest, without a broker: dedup, conflicts, quarantine, store points."""

from __future__ import annotations

from pathlib import Path

from devices.keys import DeviceSigner
from devices.registry import DeviceRegistry
from ingest.checks import RegistryCache
from ingest.device_status import DeviceStatusStore
from ingest.mqtt_source import InboundMessage
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.reasons import Reason
from ingest.sqlite_store import SqliteStore
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from tests.stack import now_ms, signed, vitals


def _pipeline(
    tmp_path: Path, device_status: DeviceStatusStore | None = None
) -> tuple[Pipeline, DeviceSigner]:
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(tmp_path / "registry.db")
    registry.register("band-1", "patient-1", signer.key)
    pipeline = Pipeline(
        Ledger(tmp_path / "ledger.db", NoteSigner.generate("test.example/log")),
        SqliteStore(tmp_path / "store.db"),
        Quarantine(tmp_path / "quarantine.db"),
        RegistryCache(registry.by_kid),
        registry,
        topic_root="r",
        device_status=device_status,
    )
    return pipeline, signer


def _msg(payload: bytes, mid: int = 1) -> InboundMessage:
    return InboundMessage("r/band-1/readings", payload, mid, 1, 0, 1)


def test_redelivery_is_a_duplicate_and_other_bytes_are_a_conflict(tmp_path: Path) -> None:
    pipeline, signer = _pipeline(tmp_path)
    first = signed("band-1", signer, 0, vitals(hr=70))
    result = pipeline.process([_msg(first), _msg(first, 2)], now_ms())
    assert (result.accepted, result.duplicates) == (1, 1)
    again = pipeline.process([_msg(first)], now_ms())
    assert (again.accepted, again.duplicates) == (0, 1)
    conflict = pipeline.process([_msg(signed("band-1", signer, 0, vitals(hr=71)))], now_ms())
    assert conflict.rejected == {Reason.SEQUENCE_CONFLICT: 1}
    assert pipeline.ledger.size == 2  # the device's key registration, and the reading
    assert pipeline.store.count() == 2  # two samples, written once despite three deliveries
    assert pipeline.quarantine.counts() == {"sequence_conflict": 1}


def test_a_rejected_message_does_not_stop_the_good_ones_in_its_batch(tmp_path: Path) -> None:
    pipeline, signer = _pipeline(tmp_path)
    batch = [
        _msg(signed("band-1", signer, 0)),
        _msg(b"garbage", 2),
        _msg(signed("band-1", signer, 1), 3),
    ]
    result = pipeline.process(batch, now_ms())
    assert result.accepted == 2
    assert result.rejected == {Reason.MALFORMED_COSE: 1}
    assert [r.payload for r in pipeline.quarantine.recent()] == [b"garbage"]


def test_sealing_signs_what_was_appended_and_chains_blocks(tmp_path: Path) -> None:
    pipeline, signer = _pipeline(tmp_path)
    assert pipeline.seal(now_ms()) is None  # nothing to seal
    pipeline.process([_msg(signed("band-1", signer, 0))], now_ms())
    first = pipeline.seal(now_ms())
    assert first is not None
    assert (first.height, first.tree_size) == (0, 2)  # the key registration, the reading
    assert pipeline.seal(now_ms()) is None  # nothing new
    pipeline.process([_msg(signed("band-1", signer, 1))], now_ms())
    second = pipeline.seal(now_ms())
    assert second is not None
    assert second.prev_hash == first.hash()
    assert second.checkpoint.size == 3


def test_key_registrations_and_revocations_are_logged_before_readings(tmp_path: Path) -> None:
    pipeline, signer = _pipeline(tmp_path)
    pipeline.process([_msg(signed("band-1", signer, 0))], now_ms())
    kinds = [LedgerEntry.decode(d).kind for _, d in pipeline.ledger.log.entries(0, 2)]
    assert kinds == [EntryKind.DEVICE_REGISTERED, EntryKind.READING]
    registration = DeviceKeyStatement.from_entry(
        LedgerEntry.decode(pipeline.ledger.log.entry(0) or b"")
    )
    assert (registration.device_id, registration.patient_id) == ("band-1", "patient-1")
    assert registration.key == signer.key


def test_a_key_revoked_between_check_and_write_is_refused_and_its_revocation_logged(
    tmp_path: Path,
) -> None:
    pipeline, signer = _pipeline(tmp_path)
    batch = [_msg(signed("band-1", signer, 0))]
    verdicts = pipeline.checker.check([(m.topic, m.payload) for m in batch], now_ms())
    registry = DeviceRegistry(tmp_path / "registry.db")
    registry.revoke("band-1")  # after the checks passed, before the write
    registry.close()
    result = pipeline.process(batch, now_ms(), verdicts)
    assert result.rejected == {Reason.REVOKED_DEVICE: 1}
    kinds = [LedgerEntry.decode(d).kind for _, d in pipeline.ledger.log.entries(0, 9)]
    assert kinds == [EntryKind.DEVICE_REGISTERED, EntryKind.DEVICE_REVOKED]


def test_a_revoked_devices_redelivery_of_a_reading_logged_before_is_a_duplicate(
    tmp_path: Path,
) -> None:
    """The broker redelivers what was logged but not acked; the revocation came in between."""
    pipeline, signer = _pipeline(tmp_path)
    logged = _msg(signed("band-1", signer, 0))
    assert pipeline.process([logged], now_ms()).accepted == 1
    registry = DeviceRegistry(tmp_path / "registry.db")
    registry.revoke("band-1")
    registry.close()
    again = pipeline.process([logged], now_ms())
    assert (again.accepted, again.duplicates, dict(again.rejected)) == (0, 1, {})
    later = pipeline.process([_msg(signed("band-1", signer, 1))], now_ms())
    assert later.rejected == {Reason.REVOKED_DEVICE: 1}
    assert later.accepted == 0
