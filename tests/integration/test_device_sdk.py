"""The device SDK against a real Mosquitto: QoS 1, reconnects, and the persistent queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.publisher import BrokerAddress, DevicePublisher, PublisherConfig
from devices.reading import decode_reading
from ledger.entries import LedgerEntry
from tests.servers import Mosquitto, TcpProxy
from tests.stack import register_devices, settings_for, start_ingest, vitals, wait_until

pytestmark = pytest.mark.integration


async def _outage_and_replay(
    broker_port: int,
    device_port: int,
    outage: Callable[[], Awaitable[object]],
    recovery: Callable[[], Awaitable[object]],
    data_dir: Path,
    topic_root: str,
    tmp_path: Path,
    share_group: str | None = None,
) -> None:
    ((device_id, signer),) = register_devices(data_dir, 1).items()
    extra = {} if share_group is None else {"share_group": share_group}
    ingest = await start_ingest(settings_for(data_dir, broker_port, topic_root, **extra))
    publisher = DevicePublisher(
        device_id,
        signer,
        Outbox(tmp_path / "outbox.db", device_id),
        BrokerAddress(port=device_port),
        PublisherConfig(topic_root=topic_root, reconnect_min_s=0.05, reconnect_max_s=0.5),
    )
    sender = asyncio.create_task(publisher.run())
    try:
        for _ in range(10):
            publisher.submit(vitals())
        await asyncio.wait_for(publisher.drained(), 10)

        await outage()  # the device keeps measuring
        await wait_until(lambda: not publisher.connected.is_set(), what="the device to notice")
        for _ in range(25):
            publisher.submit(vitals())
        await asyncio.sleep(0.3)
        assert publisher.backlog == 25, "readings taken offline wait in the outbox"

        await recovery()
        await asyncio.wait_for(publisher.drained(), 20)
        ledger = ingest.runtime.ledger
        await wait_until(lambda: ledger.size == 1 + 35, what="all 35 readings recorded")
        seqs = [  # after the device's key registration
            decode_reading(parse_sign1(LedgerEntry.decode(data).body).payload).seq
            for _, data in ledger.log.entries(1, 36)
        ]
        assert seqs == list(range(35)), "replayed in order, nothing lost, nothing twice"
        assert publisher.reconnects >= 1
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ingest.close()


async def test_readings_queued_during_a_network_outage_are_replayed_in_order(
    mosquitto: Mosquitto, tmp_path: Path, data_dir: Path, topic_root: str
) -> None:
    proxy = await TcpProxy(mosquitto.port).start()
    await _outage_and_replay(
        mosquitto.port, proxy.port, proxy.cut, proxy.start, data_dir, topic_root, tmp_path
    )
    await proxy.cut()


async def test_readings_queued_during_a_broker_restart_are_replayed_in_order(
    tmp_path: Path, data_dir: Path, topic_root: str
) -> None:
    """Mosquitto 2.0.11 does not restore *shared* subscriptions from its persistence file, so
    this runs the ingestor on a plain persistent subscription (see docs/decisions.md)."""
    broker = Mosquitto(tmp_path / "broker").start()

    async def stop() -> None:
        broker.stop()

    async def start() -> None:
        broker.start()

    try:
        await _outage_and_replay(
            broker.port, broker.port, stop, start, data_dir, topic_root, tmp_path, share_group=""
        )
    finally:
        broker.stop()


async def test_the_queue_and_sequence_survive_a_device_restart(tmp_path: Path) -> None:
    signer = DeviceSigner.generate()
    unreachable = BrokerAddress(port=1)  # nothing listens: every reading stays queued
    first = DevicePublisher("band-7", signer, Outbox(tmp_path / "o.db", "band-7"), unreachable)
    assert [first.submit(vitals()) for _ in range(3)] == [0, 1, 2]
    # the device reboots: a new process opens the same outbox
    second = DevicePublisher("band-7", signer, Outbox(tmp_path / "o.db", "band-7"), unreachable)
    assert second.backlog == 3
    assert second.submit(vitals()) == 3, "sequence numbers never repeat across restarts"


async def test_a_cancelled_publisher_stops_even_if_its_disconnect_fails(tmp_path: Path) -> None:
    """aiomqtt may turn the cancellation into an MqttError when the DISCONNECT cannot complete;
    the publisher's retry loop must still end."""
    import aiomqtt

    from devices.publisher import _reraise_if_cancelled

    async def cancelled_while_handling() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            try:
                raise aiomqtt.MqttError("Operation timed out")  # what __aexit__ raised
            except aiomqtt.MqttError as exc:
                _reraise_if_cancelled(exc)
            raise AssertionError("the cancellation was swallowed") from None

    task = asyncio.create_task(cancelled_while_handling())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_publisher_stops_even_when_a_publish_swallows_its_cancellation(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's wait_for (in aiomqtt's publish) returns normally when the PUBACK and the
    cancel arrive in one turn; the task is still cancelling, and the publisher must stop."""
    swallowed = asyncio.Event()

    async def send_window_like_wait_for(*_: object) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()  # and return as if the publish had completed

    monkeypatch.setattr(DevicePublisher, "_send_window", send_window_like_wait_for)
    signer = DeviceSigner.generate()
    publisher = DevicePublisher(
        "band-8",
        signer,
        Outbox(tmp_path / "o.db", "band-8"),
        BrokerAddress(port=mosquitto.port),
        PublisherConfig(topic_root=topic_root),
    )
    task = asyncio.create_task(publisher.run())
    await asyncio.wait_for(publisher.connected.wait(), 10)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait({task}, timeout=5)  # not wait_for: it would wait on a task that never ends
    assert swallowed.is_set()
    assert task.cancelled(), "the publisher kept running after its cancellation"


async def test_a_publisher_cancelled_while_idle_leaves_no_task_behind(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    """A fleet cancels a device's connection when it goes offline or the run ends: nothing of
    the idle publisher may stay pending on the loop (a leak per outage, and "Task was
    destroyed but it is pending" when the loop closes)."""
    publisher = DevicePublisher(
        "band-9",
        DeviceSigner.generate(),
        Outbox(tmp_path / "o.db", "band-9"),
        BrokerAddress(port=mosquitto.port),
        PublisherConfig(topic_root=topic_root),
    )
    before = asyncio.all_tasks()
    task = asyncio.create_task(publisher.run())
    publisher.submit(vitals())
    await asyncio.wait_for(publisher.drained(), 10)  # sent: the publisher waits, idle
    await wait_until(lambda: len(asyncio.all_tasks() - before) > 2, what="the idle waiters")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await wait_until(lambda: asyncio.all_tasks() == before, 5, "the publisher's tasks to end")
