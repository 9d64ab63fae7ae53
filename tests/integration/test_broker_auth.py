"""The deployment's Mosquitto configuration (deploy/mosquitto) against a real Mosquitto: TLS,
a password per client, and an ACL that keeps each device to its own topic."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.publisher import BrokerAddress, DevicePublisher
from devices.registry import DeviceRegistry
from tests.stack import settings_for, start_ingest, vitals, wait_until
from vitaltrail.broker_auth import write_passwords, write_tls
from vitaltrail.mosquitto import PROJECT_CONF, free_port, mosquitto_binary, wait_for_port

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, Path, dict[str, str]]]:
    """Mosquitto with the project's settings and the deployment's auth.conf and ACL verbatim,
    only the paths and the port moved into the test's directory."""
    certs, config = tmp_path / "certs", tmp_path / "config"
    write_tls(certs, ["localhost", "127.0.0.1"])
    passwords = write_passwords(config, ["ingest", "dev-a", "dev-b"])
    (config / "acl").write_text((DEPLOY / "acl").read_text())
    port = free_port()
    auth = (
        (DEPLOY / "auth.conf")
        .read_text()
        .replace("/mosquitto/auth/certs/", f"{certs}/")
        .replace("/mosquitto/auth/", f"{config}/")
        .replace("/mosquitto/config/", f"{config}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
    )
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        PROJECT_CONF.read_text()
        + auth
        + f"\npersistence_location {tmp_path}/\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    with (tmp_path / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
    wait_for_port(port)
    yield port, certs / "ca.crt", passwords
    proc.terminate()
    proc.wait(10)


class Client:
    """A paho MQTT 5 client over TLS that records what the broker answered."""

    def __init__(self, port: int, ca: Path, user: str | None, password: str | None) -> None:
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.acks: dict[int, ReasonCode] = {}
        self.acked = threading.Condition()
        self.received: list[tuple[str, bytes | bytearray]] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"c-{user}", protocol=paho.MQTTv5
        )
        self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connack = reason
        self.connected.set()

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self.acked:
            self.acks[mid] = reason
            self.acked.notify_all()

    def accepted(self) -> bool:
        """Whether the broker accepted the connection (waits for its CONNACK)."""
        assert self.connected.wait(10), "no CONNACK"
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str) -> ReasonCode:
        mid = self.client.publish(topic, b"reading", qos=1).mid
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, 10)
            return self.acks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_publishes_only_to_its_own_topic(broker: tuple[int, Path, dict[str, str]]) -> None:
    port, ca, passwords = broker
    ingest = Client(port, ca, "ingest", passwords["ingest"])
    device = Client(port, ca, "dev-a", passwords["dev-a"])
    try:
        assert ingest.accepted()
        assert device.accepted()
        granted = threading.Event()
        ingest.client.on_subscribe = lambda *_: granted.set()
        ingest.client.subscribe("$share/ingest/vitaltrail/v1/+/readings", qos=1)
        assert granted.wait(10)
        assert not device.publish("vitaltrail/v1/dev-a/readings").is_failure
        assert device.publish("vitaltrail/v1/dev-b/readings").getName() == "Not authorized"
        assert device.publish("vitaltrail/v1/dev-a/other").getName() == "Not authorized"
        assert not device.publish("vitaltrail/v1/dev-a/readings").is_failure
    finally:
        device.close()
        ingest.close()
    assert [topic for topic, _ in ingest.received] == ["vitaltrail/v1/dev-a/readings"] * 2


@pytest.mark.parametrize(
    ("user", "password"), [(None, None), ("dev-a", "wrong"), ("stranger", "anything")]
)
def test_an_unknown_client_cannot_connect(
    broker: tuple[int, Path, dict[str, str]], user: str | None, password: str | None
) -> None:
    port, ca, _ = broker
    client = Client(port, ca, user, password)
    try:
        assert client.connected.wait(10)
        assert client.connack is not None
        assert client.connack.getName() in {"Not authorized", "Bad user name or password"}
    finally:
        client.close()


def test_plain_tcp_is_refused_on_the_tls_listener(broker: tuple[int, Path, dict[str, str]]) -> None:
    port, _, passwords = broker
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=paho.MQTTv5)
    client.username_pw_set("dev-a", passwords["dev-a"])
    result = threading.Event()
    client.on_connect = lambda *_: result.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert not result.wait(3), "a plaintext client got a CONNACK"
    finally:
        client.loop_stop()


async def test_devices_and_the_ingestor_work_over_tls_with_their_credentials(
    broker: tuple[int, Path, dict[str, str]], tmp_path: Path
) -> None:
    port, ca, passwords = broker
    data_dir = tmp_path / "data"
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(data_dir / "registry.db")
    registry.register("dev-a", "patient-a", signer.key)
    registry.close()
    (tmp_path / "ingest.password").write_text(passwords["ingest"])
    settings = settings_for(
        data_dir,
        port,
        "vitaltrail/v1",
        mqtt_username="ingest",
        mqtt_password_file=tmp_path / "ingest.password",
        mqtt_tls_ca=ca,
        share_group="ingest",
    )
    ingest = await start_ingest(settings)
    publisher = DevicePublisher(
        "dev-a",
        signer,
        Outbox(tmp_path / "outbox.db", "dev-a"),
        BrokerAddress(port=port, username="dev-a", password=passwords["dev-a"], tls_ca=str(ca)),
    )
    sender = asyncio.create_task(publisher.run())
    try:
        for _ in range(5):
            publisher.submit(vitals())
        await asyncio.wait_for(publisher.drained(), 15)
        ledger = ingest.runtime.ledger
        await wait_until(lambda: ledger.size == 1 + 5, what="five readings over TLS")
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ingest.close()
