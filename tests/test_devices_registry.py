"""The device registry and the device's durable outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.keys import DeviceSigner
from devices.outbox import Outbox, OutboxFull
from devices.registry import DeviceRegistry, RegistryError


def test_register_lookup_revoke(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "r.db")
    signer = DeviceSigner.generate()
    record = registry.register("band-1", "patient-1", signer.key)
    assert registry.by_kid(signer.key.kid) == record
    assert registry.register("band-1", "patient-1", signer.key) == record  # idempotent
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("band-1", "patient-2", signer.key)
    with pytest.raises(RegistryError, match="another device"):
        registry.register("band-2", "patient-1", signer.key)
    revoked = registry.revoke("band-1")
    assert revoked.revoked
    with pytest.raises(RegistryError, match="already revoked"):
        registry.revoke("band-1")
    with pytest.raises(RegistryError, match="unknown"):
        registry.revoke("nope")
    assert registry.by_kid(b"\x00" * 32) is None


@pytest.mark.parametrize("bad", ["", "a b", "../x", "x" * 65, "tab\t", "ünïcode"])
def test_hostile_ids_are_refused(tmp_path: Path, bad: str) -> None:
    registry = DeviceRegistry(tmp_path / "r.db")
    with pytest.raises(RegistryError):
        registry.register(bad, "patient-1", DeviceSigner.generate().key)
    with pytest.raises(RegistryError):
        registry.register("band-1", bad, DeviceSigner.generate().key)


def test_outbox_is_fifo_bounded_and_shared_files_keep_devices_apart(tmp_path: Path) -> None:
    a = Outbox(tmp_path / "o.db", "a", capacity=3)
    b = Outbox(tmp_path / "o.db", "b")
    for i in range(3):
        assert a.add(lambda seq: f"a{seq}".encode()) == i
    b.add(lambda seq: b"b0")
    with pytest.raises(OutboxFull):
        a.add(lambda seq: b"")
    assert [m.payload for m in a.oldest(10)] == [b"a0", b"a1", b"a2"]
    a.remove([0, 1])
    assert len(a) == 1
    assert [m.seq for m in a.oldest(10)] == [2]
    assert [m.payload for m in b.oldest(10)] == [b"b0"]


def test_registrations_and_revocations_are_numbered_events_in_order(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "r.db")
    a, b = DeviceSigner.generate(), DeviceSigner.generate()
    registry.register("band-a", "patient-1", a.key)
    registry.register("band-b", "patient-2", b.key)
    registry.revoke("band-a")
    events = registry.events_after(0)
    assert [(e.seq, e.kind, e.device.device_id) for e in events] == [
        (1, "registered", "band-a"),
        (2, "registered", "band-b"),
        (3, "revoked", "band-a"),
    ]
    assert registry.events_after(2)[0].device.revoked
    assert registry.events_after(3) == []
    assert [e.seq for e in registry.events_after(0, limit=2)] == [1, 2]


def test_a_registry_from_before_key_events_gets_them_backfilled(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "r.db")
    registry.register("band-a", "patient-1", DeviceSigner.generate().key)
    registry.register("band-b", "patient-2", DeviceSigner.generate().key)
    registry.revoke("band-a")
    registry._db.execute("DELETE FROM key_events")  # as an older registry would be
    registry._db.commit()
    registry.close()
    reopened = DeviceRegistry(tmp_path / "r.db")
    kinds = [(e.kind, e.device.device_id) for e in reopened.events_after(0)]
    assert sorted(kinds[:2]) == [("registered", "band-a"), ("registered", "band-b")]
    assert kinds[2] == ("revoked", "band-a")
