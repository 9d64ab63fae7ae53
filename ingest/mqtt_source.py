"""The ingestor's MQTT connection: paho-mqtt on the asyncio loop, with manual acks.

Why not aiomqtt here: the ingestor must send PUBACK only after a message is durable in the
ledger and the store, and aiomqtt 2.x acknowledges on receipt. paho-mqtt 2.x has manual acks
(``manual_ack_set`` / ``ack``), so this module drives a paho client from the event loop's
socket callbacks, the way aiomqtt itself does (see docs/decisions.md).

Flow control: with MQTT 5 the broker never has more than ``receive_maximum`` unacknowledged
messages out to us. On MQTT 3.1.1 (the embedded broker) there is no such limit, so reading
from the socket pauses while ``receive_maximum`` messages wait, and TCP pushes back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger("vitaltrail.ingest")


class MqttError(Exception):
    """The broker connection failed, was refused, or was lost."""


@dataclass(frozen=True)
class SourceConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vitaltrail-ingest"
    mqtt5: bool = True
    topic_root: str = "vitaltrail/v1"
    share_group: str | None = "ingest"  # MQTT 5 shared subscription group; None: plain
    receive_maximum: int = 10000
    # MQTT 5 Maximum Packet Size announced in CONNECT: the broker sends nothing bigger (it
    # drops it). With receive_maximum it bounds the bytes received and not yet acked.
    max_packet_bytes: int | None = None
    session_expiry_s: int = 7 * 24 * 3600  # the broker keeps our backlog this long
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None  # TLS, trusting this CA file (the deployment's)

    @property
    def subscription(self) -> str:
        topic = f"{self.topic_root}/+/readings"
        if self.mqtt5 and self.share_group:
            return f"$share/{self.share_group}/{topic}"
        return topic


@dataclass(frozen=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int
    connection: int  # which connection delivered it: acks for older ones are dropped


class _BufferedClient(paho.Client):
    """paho reads a packet a few bytes at a time (type, each length byte, then the rest), one
    ``recv`` system call each; this serves those reads from one 64 KiB ``recv`` instead.

    It overrides paho's ``_sock_recv`` (pinned: paho-mqtt 2.x); since bytes may then wait in
    the buffer while the socket is not readable, :meth:`MqttSource._read` keeps reading until
    :attr:`buffered` is empty.
    """

    _buffer = b""
    _pos = 0

    @property
    def buffered(self) -> int:
        pending = getattr(self._sock, "pending", None)  # TLS: decrypted bytes epoll cannot see
        return len(self._buffer) - self._pos + (pending() if pending else 0)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buffer):
            data = super()._sock_recv(65536)  # raises BlockingIOError when nothing waits
            if not data:
                return data  # the connection closed
            self._buffer, self._pos = data, 0
        chunk = self._buffer[self._pos : self._pos + bufsize]
        self._pos += len(chunk)
        return chunk


class MqttSource:
    """One broker session. ``async with`` connects and subscribes; leaving it disconnects."""

    _connections = 0

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        MqttSource._connections += 1
        self._connection = MqttSource._connections
        self._inbox: deque[InboundMessage] = deque()
        self._arrived = asyncio.Event()
        self._unacked = 0
        self._reading_paused = False
        self._sock: socket.socket | None = None
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._subscribed: asyncio.Future[None] = self._loop.create_future()
        self.disconnected: asyncio.Future[None] = self._loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        self._client = self._make_client()

    def _make_client(self) -> _BufferedClient:
        cfg = self.config
        client = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=paho.MQTTv5 if cfg.mqtt5 else paho.MQTTv311,
            clean_session=None if cfg.mqtt5 else False,
        )
        client.manual_ack_set(True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls_ca is not None:
            client.tls_set(ca_certs=cfg.tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    async def __aenter__(self) -> Self:
        cfg = self.config
        properties = None
        if cfg.mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = cfg.session_expiry_s
            properties.ReceiveMaximum = cfg.receive_maximum
            if cfg.max_packet_bytes is not None:
                properties.MaximumPacketSize = cfg.max_packet_bytes
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                rc = self._client.connect(
                    cfg.host,
                    cfg.port,
                    cfg.keepalive_s,
                    clean_start=False if cfg.mqtt5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=properties,
                )
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise MqttError(
                        f"cannot connect to {cfg.host}:{cfg.port}: {paho.error_string(rc)}"
                    )
                await self._connected
                if cfg.mqtt5:
                    self._client.subscribe(cfg.subscription, options=SubscribeOptions(qos=1))
                else:
                    self._client.subscribe(cfg.subscription, qos=1)
                await self._subscribed
        except (OSError, TimeoutError) as exc:
            self._teardown()
            raise MqttError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {exc!r}") from exc
        except MqttError:
            self._teardown()
            raise
        self._misc = self._loop.create_task(self._misc_loop())
        log.info("subscribed to %s on %s:%d", cfg.subscription, cfg.host, cfg.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.disconnected.done():
            self._client.disconnect()
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self.disconnected)
            except TimeoutError:
                log.warning("broker did not close the connection in time")
        self._teardown()

    def _teardown(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
            self._sock = None

    @property
    def unacked(self) -> int:
        return self._unacked

    async def next_batch(self, max_messages: int, max_wait_s: float) -> list[InboundMessage]:
        """Wait for at least one message, then gather up to ``max_messages`` for ``max_wait_s``."""
        while not self._inbox:
            self._raise_if_disconnected()
            self._arrived.clear()
            await self._arrived.wait()  # also set when the connection drops
        deadline = self._loop.time() + max_wait_s
        while len(self._inbox) < max_messages and not self.disconnected.done():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        count = min(max_messages, len(self._inbox))
        return [self._inbox.popleft() for _ in range(count)]

    def take_all(self) -> list[InboundMessage]:
        """Everything received and not yet handed out (for a flush at shutdown)."""
        batch = list(self._inbox)
        self._inbox.clear()
        return batch

    def ack(self, messages: list[InboundMessage]) -> None:
        """Acknowledge durable messages, in the order they arrived."""
        for m in messages:
            if m.connection != self._connection:
                continue
            self._unacked -= 1
            if m.qos > 0 and not self.disconnected.done():
                self._client.ack(m.mid, m.qos)
        if self._reading_paused and self._unacked < self.config.receive_maximum // 2:
            self._resume_reading()

    def _raise_if_disconnected(self) -> None:
        if self.disconnected.done():
            raise MqttError("connection to the broker lost") from self.disconnected.exception()

    # paho callbacks, all on the event loop thread -------------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self._connected.done():
            return
        if rc.is_failure:
            self._connected.set_exception(MqttError(f"broker refused the connection: {rc}"))
        else:
            self._connected.set_result(None)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        if self._subscribed.done():
            return
        if any(rc.is_failure for rc in rcs):
            self._subscribed.set_exception(MqttError(f"broker refused the subscription: {rcs}"))
        else:
            self._subscribed.set_result(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        error = MqttError(f"disconnected: {rc}")
        for future in (self._connected, self._subscribed):
            if not future.done():
                future.set_exception(error)
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        self._arrived.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        self._inbox.append(
            InboundMessage(
                topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                time.time_ns(),
                self._connection,
            )
        )
        self._unacked += 1
        self._arrived.set()
        # Until SUBACK arrives, keep reading: a resumed session's backlog may stand before it.
        if self._unacked >= self.config.receive_maximum and self._subscribed.done():
            self._pause_reading()

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self._loop.add_reader(sock, self._read)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _read(self) -> None:
        # paho handles one packet per call: go on while the socket or our buffer holds more.
        for _ in range(512):
            before = len(self._inbox)
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._reading_paused:
                return
            if len(self._inbox) == before and not self._client.buffered:
                return
        if self._client.buffered:
            self._loop.call_soon(self._read)  # the rest after other callbacks had their turn

    def _pause_reading(self) -> None:
        if self._reading_paused:
            return
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
        self._reading_paused = True

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._sock is not None:
            self._loop.add_reader(self._sock, self._read)
            self._read()

    async def _misc_loop(self) -> None:
        while True:  # keepalive pings and retries; ends when the connection does
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1)
