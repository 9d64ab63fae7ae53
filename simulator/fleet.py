"""Run a ward in real time: each simulated device signs and publishes through the device SDK.

Every device has its own key (created on first run under ``keys_dir``), its own MQTT
connection and its own durable outbox; an outage window simply stops that device's
connection, so its readings queue and are replayed in order when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.publisher import BrokerAddress, DevicePublisher, PublisherConfig
from simulator.ward import SimDevice, Ward

log = logging.getLogger("vitaltrail.simulator")


@dataclass
class FleetStats:
    elapsed_s: float = 0.0
    submitted: int = 0  # readings signed in this run
    carried_over: int = 0  # readings an earlier run left in the outboxes, sent in this one
    sent: int = 0  # readings the broker acknowledged in this run (old and new)
    queued: int = 0
    offline: int = 0
    reconnects: int = 0


def device_signer(keys_dir: Path, device_id: str) -> DeviceSigner:
    """The simulated device's key: created once, reused on later runs."""
    path = keys_dir / f"{device_id}.key"
    if path.exists():
        return DeviceSigner.load(path)
    signer = DeviceSigner.generate()
    signer.save(path)
    return signer


class Fleet:
    def __init__(
        self,
        ward: Ward,
        broker: BrokerAddress,
        state_dir: Path,
        publisher_config: PublisherConfig | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        """``credentials``: each device's broker password (its user name is its id)."""
        self.ward = ward
        self._broker = broker
        self._credentials = credentials or {}
        self._config = publisher_config
        self.signers = {
            d.device_id: device_signer(state_dir / "keys", d.device_id) for d in ward.devices
        }
        self._outbox_path = state_dir / "outbox.db"
        self.publishers: dict[str, DevicePublisher] = {}
        self.stats = FleetStats()

    async def run(
        self,
        duration_s: float,
        *,
        progress: Callable[[FleetStats], None] | None = None,
        drain_timeout_s: float = 30.0,
        history_s: float = 0.0,
    ) -> FleetStats:
        """Publish the ward's readings for ``duration_s`` of wall-clock time, then drain. With
        ``history_s``, the readings of that long before the start come first, all at once, as
        from devices replaying their outboxes after an outage; then the live ones."""
        outboxes = [Outbox(self._outbox_path, d.device_id) for d in self.ward.devices]
        connections: dict[str, asyncio.Task[None]] = {}
        for device, outbox in zip(self.ward.devices, outboxes, strict=True):
            broker = self._broker
            if device.device_id in self._credentials:
                password = self._credentials[device.device_id]
                broker = replace(broker, username=device.device_id, password=password)
            self.publishers[device.device_id] = DevicePublisher(
                device.device_id, self.signers[device.device_id], outbox, broker, self._config
            )
        self.stats.carried_over = sum(p.backlog for p in self.publishers.values())
        start = time.monotonic()
        start_ms = int((time.time() - history_s) * 1000)
        reporter = asyncio.create_task(self._report(start, progress))
        try:
            for t, device, samples in self.ward.schedule(start_ms, history_s + duration_s):
                delay = start + t - history_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._set_online(device, t, connections)
                self.publishers[device.device_id].submit(samples, device.battery_pct(t))
                self.stats.submitted += 1
            for device in self.ward.devices:
                self._set_online(device, duration_s + 1e9, connections)  # outages end with the run
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout_s):
                    await asyncio.gather(*(p.drained() for p in self.publishers.values()))
        finally:
            reporter.cancel()
            for task in connections.values():
                task.cancel()
            await asyncio.gather(*connections.values(), reporter, return_exceptions=True)
            self._update(start)
            for outbox in outboxes:
                outbox.close()
        return self.stats

    def _set_online(
        self, device: SimDevice, t_s: float, connections: dict[str, asyncio.Task[None]]
    ) -> None:
        task = connections.get(device.device_id)
        if device.is_offline(t_s):
            if task is not None:
                task.cancel()
                del connections[device.device_id]
                log.info("device %s goes offline", device.device_id)
        elif task is None:
            connections[device.device_id] = asyncio.create_task(
                self.publishers[device.device_id].run()
            )

    def _update(self, start: float) -> None:
        s = self.stats
        s.elapsed_s = time.monotonic() - start
        s.sent = sum(p.sent for p in self.publishers.values())
        s.queued = sum(p.backlog for p in self.publishers.values())
        s.offline = sum(1 for p in self.publishers.values() if not p.connected.is_set())
        s.reconnects = sum(p.reconnects for p in self.publishers.values())

    async def _report(self, start: float, progress: Callable[[FleetStats], None] | None) -> None:
        while True:
            await asyncio.sleep(1)
            self._update(start)
            if progress is not None:
                progress(self.stats)
