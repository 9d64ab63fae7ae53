"""The deployment's Mosquitto for tests: deploy/mosquitto/auth.conf verbatim on top of the
project's settings, and the broker files `vitaltrail deploy-init` writes (its TLS material and
dynamic-security file), only the paths and the port moved into the test's directory."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.keys import DeviceSigner
from devices.outbox import Outbox
from devices.publisher import BrokerAddress, DevicePublisher, PublisherConfig
from tests.stack import settings_for
from vitaltrail.broker_access import BrokerClient, Kind, Topics, write_access
from vitaltrail.certificates import write_tls
from vitaltrail.deploy import SecretsLayout
from vitaltrail.mosquitto import Mosquitto, dynsec_plugin, free_port
from vitaltrail.settings import Settings

AUTH_CONF = Path(__file__).parents[1] / "deploy" / "mosquitto" / "auth.conf"
INGESTORS = ("ingest-a", "ingest-b")
DEVICES = ("dev-a", "dev-b")
TOPICS = Topics()  # the deployment's: the default topic root and share group


def deployment_access(broker_dir: Path, port: int) -> str:
    """auth.conf with the compose paths replaced by ``broker_dir`` (what compose mounts at
    /mosquitto/auth), Debian's plugin path, and a loopback port."""
    text = AUTH_CONF.read_text()
    for container, here in (
        ("/mosquitto/auth/", f"{broker_dir}/"),
        ("/usr/lib/mosquitto_dynamic_security.so", dynsec_plugin()),
        ("listener 8883", f"listener {port} 127.0.0.1"),
    ):
        assert container in text, f"auth.conf no longer says {container!r}"
        text = text.replace(container, here)
    return text


@dataclass
class DeployedBroker:
    server: Mosquitto
    layout: SecretsLayout
    passwords: dict[str, str]  # the clear password issued to each client

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ca(self) -> Path:
        return self.layout.broker / "certs" / "ca.crt"

    def ingestor_settings(self, data_dir: Path, user: str = "ingest-a") -> Settings:
        """An ingestor's settings as the deployment gives them: its own user, password file,
        client id (bound to its user name), the CA and the shared subscription."""
        password_file = data_dir.parent / f"{user}.password"
        password_file.write_text(self.passwords[user])
        return settings_for(
            data_dir,
            self.port,
            TOPICS.root,
            mqtt_username=user,
            mqtt_password_file=password_file,
            mqtt_tls_ca=self.ca,
            share_group=TOPICS.share_group,
        ).model_copy(update={"client_id": user})

    def device_publisher(
        self, device: str, signer: DeviceSigner, outbox: Path, window: int | None = None
    ) -> DevicePublisher:
        """The device SDK's publisher, connecting as ``device`` with the password issued to it."""
        address = BrokerAddress(
            port=self.port, username=device, password=self.passwords[device], tls_ca=str(self.ca)
        )
        config = PublisherConfig(topic_root=TOPICS.root)
        if window is not None:
            config = replace(config, window=window)
        return DevicePublisher(device, signer, Outbox(outbox, device), address, config)

    def connect(
        self,
        user: str | None,
        client_id: str,
        *,
        password: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> Client:
        """Connect as ``user`` with ``client_id``; by default with the password issued to it."""
        if password is None and user is not None:
            password = self.passwords[user]
        return Client(
            self.port,
            self.ca,
            user,
            password,
            client_id,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
        )


def start_deployed_broker(directory: Path) -> DeployedBroker:
    """The broker files of a deployment with two ingestors and devices dev-a, dev-b."""
    layout = SecretsLayout(directory / "secrets")
    write_tls(layout.broker / "certs", layout.ca, ["localhost", "127.0.0.1"])
    clients = [BrokerClient(name, Kind.INGESTOR) for name in INGESTORS]
    clients += [BrokerClient(name, Kind.DEVICE) for name in DEVICES]
    passwords = write_access(layout.access_file, clients, TOPICS)
    port = free_port()
    server = Mosquitto(
        directory / "mosquitto", port, access=deployment_access(layout.broker, port)
    ).start()
    return DeployedBroker(server, layout, passwords)


class Client:
    """A paho MQTT 5 client over TLS that records what the broker answered."""

    def __init__(
        self,
        port: int,
        ca: Path,
        user: str | None,
        password: str | None,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.disconnects: list[ReasonCode] = []
        self.acks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.acked = threading.Condition()
        self.received: list[tuple[str, bytes | bytearray]] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
        self.client.loop_start()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connack = reason
        self.connected.set()
        if reason.is_failure:
            self.client.disconnect()  # no retry: paho would reconnect after a second

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.disconnects.append(reason)

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self.acked:
            self.acks[mid] = reason
            self.acked.notify_all()

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        with self.acked:
            self.subacks[mid] = reasons
            self.acked.notify_all()

    def accepted(self) -> bool:
        """Whether the broker accepted the connection (waits for its CONNACK)."""
        assert self.connected.wait(10), "no CONNACK"
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes = b"reading") -> ReasonCode:
        mid = self.client.publish(topic, payload, qos=1).mid
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, 10)
            return self.acks[mid]

    def subscribe(self, topic: str) -> ReasonCode:
        """The broker's answer in its SUBACK (0x87 Not authorized, or the granted QoS)."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None, f"SUBSCRIBE not sent: {topic}"
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.subacks, 10), f"no SUBACK: {topic}"
            (reason,) = self.subacks[mid]
            return reason

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
