"""The deployment's Mosquitto configuration (deploy/mosquitto/auth.conf and the broker files
deploy-init writes) against a real Mosquitto: TLS, a password per client, each client bound to
its client id, a device may publish its own readings and subscribe to nothing, an ingestor may
only take its share of the readings."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.keys import DeviceSigner
from devices.registry import DeviceRegistry
from tests.deployed_broker import INGESTORS, TOPICS, DeployedBroker, deployment_access
from tests.stack import start_ingest, vitals, wait_for, wait_until
from vitaltrail.cli import main
from vitaltrail.deploy import SecretsLayout
from vitaltrail.mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87


def test_a_device_publishes_only_to_its_own_topic(broker: DeployedBroker) -> None:
    ingest = broker.connect("ingest-a", "ingest-a")
    device = broker.connect("dev-a", "dev-a")
    try:
        assert ingest.accepted()
        assert device.accepted()
        assert not ingest.subscribe(TOPICS.shared).is_failure
        assert not device.publish("vitaltrail/v1/dev-a/readings").is_failure
        assert device.publish("vitaltrail/v1/dev-b/readings").getName() == "Not authorized"
        assert device.publish("vitaltrail/v1/dev-a/other").getName() == "Not authorized"
        assert not device.publish("vitaltrail/v1/dev-a/readings").is_failure
    finally:
        device.close()
        ingest.close()
    assert [topic for topic, _ in ingest.received] == ["vitaltrail/v1/dev-a/readings"] * 2


@pytest.mark.parametrize(
    "topic",
    [
        "$share/ingest/vitaltrail/v1/+/readings",  # the ingestors' group: would steal a share
        "$share/other/vitaltrail/v1/+/readings",
        "vitaltrail/v1/+/readings",
        "vitaltrail/v1/dev-b/readings",  # its own topic
        "vitaltrail/v1/dev-a/readings",
        "#",
        "$SYS/#",
        "$CONTROL/dynamic-security/v1/#",
    ],
)
def test_a_device_may_subscribe_to_nothing(broker: DeployedBroker, topic: str) -> None:
    device = broker.connect("dev-b", "dev-b")
    try:
        assert device.accepted()
        assert device.subscribe(topic).value == NOT_AUTHORIZED
    finally:
        device.close()


def test_an_ingestor_may_only_take_its_share_of_the_readings(broker: DeployedBroker) -> None:
    ingest = broker.connect("ingest-b", "ingest-b")
    try:
        assert ingest.accepted()
        for topic in ("vitaltrail/v1/+/readings", "#", "$share/other/vitaltrail/v1/+/readings"):
            assert ingest.subscribe(topic).value == NOT_AUTHORIZED, topic
        assert ingest.publish("vitaltrail/v1/dev-a/readings").getName() == "Not authorized"
        assert not ingest.subscribe(TOPICS.shared).is_failure
    finally:
        ingest.close()


@pytest.mark.parametrize("user", ["dev-b", "ingest-a"])
def test_no_client_may_change_the_rules(broker: DeployedBroker, user: str) -> None:
    """$CONTROL is refused like any topic no role allows: the broker never rewrites its file."""
    before = broker.layout.access_file.read_bytes()
    client = broker.connect(user, user)
    command = {"commands": [{"command": "createClient", "username": "evil", "password": "x"}]}
    try:
        assert client.accepted()
        reason = client.publish("$CONTROL/dynamic-security/v1", json.dumps(command).encode())
        assert reason.getName() == "Not authorized"
    finally:
        client.close()
    assert broker.layout.access_file.read_bytes() == before
    evil = broker.connect("evil", "evil", password="x")
    try:
        assert not evil.accepted()
    finally:
        evil.close()


@pytest.mark.parametrize(
    ("user", "client_id"),
    [
        ("dev-b", "ingest-a"),  # a device taking an ingestor's session
        ("ingest-b", "ingest-a"),  # one replica taking the other's
        ("dev-b", "dev-a"),  # a device posing as another
    ],
)
def test_a_client_id_belongs_to_its_user(broker: DeployedBroker, user: str, client_id: str) -> None:
    owner_user = "dev-a" if client_id == "dev-a" else "ingest-a"
    owner = broker.connect(owner_user, client_id, clean_start=False, session_expiry_s=3600)
    try:
        assert owner.accepted()
        if owner_user == "ingest-a":
            assert not owner.subscribe(TOPICS.shared).is_failure
        thief = broker.connect(user, client_id, clean_start=False, session_expiry_s=3600)
        try:
            assert thief.connected.wait(10)
            assert thief.connack is not None
            assert thief.connack.getName() in {"Not authorized", "Bad user name or password"}
        finally:
            thief.close()
        publisher = broker.connect("dev-a", "dev-a") if owner_user == "ingest-a" else owner
        assert not publisher.publish("vitaltrail/v1/dev-a/readings").is_failure
        if owner_user == "ingest-a":
            publisher.close()
            wait_for(lambda: len(owner.received) == 1, 10, "the reading")
        assert owner.disconnects == [], "the owner kept its connection and its session"
    finally:
        owner.close()


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("dev-a", "wrong"), ("stranger", "anything"), ("dev-a", "")],
)
def test_an_unknown_client_cannot_connect(
    broker: DeployedBroker, user: str | None, password: str | None
) -> None:
    client = broker.connect(user, user or "anonymous", password=password)
    try:
        assert client.connected.wait(10)
        assert client.connack is not None
        assert client.connack.getName() in {"Not authorized", "Bad user name or password"}
    finally:
        client.close()


def test_plain_tcp_is_refused_on_the_tls_listener(broker: DeployedBroker) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev-a", protocol=paho.MQTTv5)
    client.username_pw_set("dev-a", broker.passwords["dev-a"])
    result = threading.Event()
    client.on_connect = lambda *_: result.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert not result.wait(3), "a plaintext client got a CONNACK"
    finally:
        client.loop_stop()


async def test_devices_and_the_ingestor_work_over_tls_with_their_credentials(
    broker: DeployedBroker, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(data_dir / "registry.db")
    registry.register("dev-a", "patient-a", signer.key)
    registry.close()
    settings = broker.ingestor_settings(data_dir)
    ingest = await start_ingest(settings)
    publisher = broker.device_publisher("dev-a", signer, tmp_path / "outbox.db")
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


def test_what_deploy_init_writes_is_what_the_broker_runs(tmp_path: Path) -> None:
    """`vitaltrail deploy-init`'s own files on a real Mosquitto: the ingestor's password file
    and a device's hand-out password let them in, with the same rules as above."""
    secrets = SecretsLayout(tmp_path / "deploy")
    args = ["--data-dir", str(tmp_path / "shared"), "deploy-init", "--devices", "2"]
    assert main([*args, "--secrets-dir", str(secrets.root), "--broker-host", "localhost"]) == 0
    handout: dict[str, str] = json.loads(secrets.handout.read_text())
    passwords = handout | {
        name: (secrets.own(name) / "mqtt.password").read_text().strip() for name in INGESTORS
    }
    port = free_port()
    server = Mosquitto(tmp_path / "mosquitto", port, access=deployment_access(secrets.broker, port))
    deployed = DeployedBroker(server.start(), secrets, passwords)
    device_id = sorted(handout)[0]
    ingest = deployed.connect("ingest-a", "ingest-a")
    device = deployed.connect(device_id, device_id)
    try:
        assert ingest.accepted()
        assert device.accepted()
        assert not ingest.subscribe(TOPICS.shared).is_failure
        assert device.subscribe(TOPICS.shared).value == NOT_AUTHORIZED
        assert not device.publish(TOPICS.device(device_id)).is_failure
        wait_for(lambda: len(ingest.received) == 1, 10, "the device's reading")
    finally:
        device.close()
        ingest.close()
        server.stop()
