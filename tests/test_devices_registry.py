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
