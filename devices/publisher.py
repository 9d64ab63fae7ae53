"""The device SDK's publisher: sign, queue durably, send at QoS 1, replay after outages.

Built on aiomqtt 2.x (``async with Client(...)`` owns one connection; reconnection is a loop
outside it). :meth:`DevicePublisher.submit` signs a reading and writes it to the
:class:`~devices.outbox.Outbox`; :meth:`DevicePublisher.run` sends the queue in order, a
bounded window at a time, and removes messages once the broker acknowledged them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.reading import Reading, Sample, encode_reading

log = logging.getLogger("vitaltrail.devices")

DEFAULT_TOPIC_ROOT = "vitaltrail/v1"


def readings_topic(topic_root: str, device_id: str) -> str:
    return f"{topic_root}/{device_id}/readings"


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    mqtt5: bool = True
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None  # TLS, trusting this CA file


@dataclass(frozen=True)
class PublisherConfig:
    topic_root: str = DEFAULT_TOPIC_ROOT
    window: int = 64  # messages awaiting PUBACK at once
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 15.0
    timeout_s: float = 10.0


def _reraise_if_cancelled(exc: Exception) -> None:
    """aiomqtt's ``__aexit__`` can turn a cancellation into an MqttError (its disconnect timed
    out); a retry loop that caught it would never end. A cancelled task stops here instead."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _stop_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside aiomqtt's publish) returns the result instead
    of raising when a cancellation arrives just as the PUBACK does: the cancel is swallowed,
    though still pending on the task. A loop that checks here at each turn stops anyway."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _connection_lost(client: aiomqtt.Client) -> None:
    """Return (or raise) when the connection ends: a device subscribes to nothing, so the
    message iterator only wakes up when aiomqtt sees the disconnect."""
    async for _ in client.messages:
        pass


class DevicePublisher:
    """One device's signed-reading publisher."""

    def __init__(
        self,
        device_id: str,
        signer: DeviceSigner,
        outbox: Outbox,
        broker: BrokerAddress,
        config: PublisherConfig | None = None,
    ) -> None:
        self.device_id = device_id
        self._signer = signer
        self._outbox = outbox
        self._broker = broker
        self._config = config = config or PublisherConfig()
        self._topic = readings_topic(config.topic_root, device_id)
        self._queued = asyncio.Event()
        self._emptied = asyncio.Event()
        self.connected = asyncio.Event()
        self.sent = 0
        self.reconnects = 0

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    def submit(self, samples: Sequence[Sample], battery_pct: int | None = None) -> int:
        """Sign a reading of ``samples`` (and the battery's charge, when given) with the next
        sequence number and queue it durably."""

        def signed(seq: int) -> bytes:
            reading = Reading(self.device_id, seq, tuple(samples), battery_pct)
            return sign1(self._signer, encode_reading(reading))

        seq = self._outbox.add(signed)
        self._emptied.clear()
        self._queued.set()
        return seq

    async def drained(self) -> None:
        """Wait until every queued message has been acknowledged by the broker."""
        while len(self._outbox):
            self._emptied.clear()
            await self._emptied.wait()

    async def run(self) -> None:
        """Send the queue forever, reconnecting with exponential backoff."""
        try:
            await self._run()
        finally:
            self.connected.clear()

    async def _run(self) -> None:
        delay = self._config.reconnect_min_s
        while True:
            _stop_if_cancelled()
            try:
                async with self._client() as client:
                    self.connected.set()
                    delay = self._config.reconnect_min_s
                    await self._send_queue(client)
            except aiomqtt.MqttError as exc:
                _reraise_if_cancelled(exc)
                if self.connected.is_set():
                    self.reconnects += 1
                self.connected.clear()
                log.info(
                    "device %s: broker unavailable (%s); retry in %.1fs", self.device_id, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.reconnect_max_s)

    def _client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            identifier=self.device_id,
            username=self._broker.username,
            password=self._broker.password,
            protocol=aiomqtt.ProtocolVersion.V5
            if self._broker.mqtt5
            else aiomqtt.ProtocolVersion.V311,
            timeout=self._config.timeout_s,
            max_inflight_messages=self._config.window,
            tls_params=aiomqtt.TLSParameters(ca_certs=self._broker.tls_ca)
            if self._broker.tls_ca
            else None,
        )
        client.pending_calls_threshold = self._config.window + 1
        return client

    async def _send_queue(self, client: aiomqtt.Client) -> None:
        lost = asyncio.create_task(_connection_lost(client))
        try:
            while True:
                _stop_if_cancelled()
                await self._send_window(client, lost)
        finally:
            lost.cancel()
            # gather, not `suppress(CancelledError)`: a cancellation of *this* task must go on.
            await asyncio.gather(lost, return_exceptions=True)

    async def _send_window(self, client: aiomqtt.Client, lost: asyncio.Task[None]) -> None:
        batch = self._outbox.oldest(self._config.window)
        if not batch:
            self._emptied.set()
            self._queued.clear()
            queued = asyncio.create_task(self._queued.wait())
            try:
                await asyncio.wait({queued, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                queued.cancel()  # also when this task is cancelled: no waiter left behind
            if lost.done():
                lost.result()  # raises the connection's MqttError
                raise aiomqtt.MqttError("connection to the broker closed")
            return
        # paho sends in call order, so the broker sees the queue in order.
        results = await asyncio.gather(
            *(client.publish(self._topic, m.payload, qos=1) for m in batch),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]  # the whole window is re-sent; the ingestor dedups
        self._outbox.remove([m.seq for m in batch])
        self.sent += len(batch)
