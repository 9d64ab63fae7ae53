"""No device can make another device's readings disappear (issue #8, item 1).

A device's own credentials tried the two attacks that lost readings on the acl_file broker:
joining the ingestors' shared subscription (the broker handed that session a share of every
device's readings, then dropped them: it may not read them), and connecting with an
ingestor's client id and ``clean_start=False`` to take over its session. Against the
deployment's configuration both are refused and every reading is recorded exactly once; against
the old acl_file configuration the same attacker loses readings, so the harness is real."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.reading import decode_reading
from devices.registry import DeviceRegistry
from ledger.entries import LedgerEntry
from tests.deployed_broker import INGESTORS, TOPICS, DeployedBroker
from tests.stack import start_ingest, vitals, wait_for, wait_until
from vitaltrail.broker_auth import PasswordHash
from vitaltrail.deploy import SecretsLayout
from vitaltrail.mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.integration

FILTERS = (TOPICS.shared, TOPICS.readings, "#")


class Attacker(threading.Thread):
    """Device dev-b, over and over until stopped: (a) its own session, kept offline with
    ``clean_start=False`` and a session expiry, asks for every device's readings; (b) it
    connects with each ingestor's client id, ``clean_start=False``, to take its session over."""

    def __init__(self, broker: DeployedBroker) -> None:
        super().__init__(daemon=True)
        self.broker = broker
        self.stop = threading.Event()
        self.rounds = 0
        self.granted: list[str] = []  # subscriptions the broker granted
        self.refused: list[str] = []
        self.takeovers = 0  # connections the broker accepted with an ingestor's client id
        self.takeovers_refused = 0

    def attack_once(self) -> None:
        session = self.broker.connect("dev-b", "dev-b", clean_start=False, session_expiry_s=3600)
        try:
            assert session.accepted(), "the attacker is a legitimate device"
            for topic in FILTERS:
                reason = session.subscribe(topic)
                (self.refused if reason.is_failure else self.granted).append(topic)
        finally:
            session.close()  # offline now; the session (and any subscription) is kept
        for client_id in INGESTORS:
            thief = self.broker.connect(
                "dev-b", client_id, clean_start=False, session_expiry_s=3600
            )
            try:
                assert thief.connected.wait(10)
                if thief.accepted():
                    self.takeovers += 1
                else:
                    self.takeovers_refused += 1
            finally:
                thief.close()
        self.rounds += 1

    def round_done(self) -> Callable[[], bool]:
        """A predicate: has a round that started after this call ended?"""
        target = self.rounds + 2
        return lambda: self.rounds >= target

    def run(self) -> None:
        while not self.stop.is_set():
            self.attack_once()


async def test_no_reading_is_lost_while_a_device_attacks(
    broker: DeployedBroker, tmp_path: Path
) -> None:
    n = 300
    data_dir = tmp_path / "data"
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(data_dir / "registry.db")
    registry.register("dev-a", "patient-a", signer.key)
    registry.close()
    settings = broker.ingestor_settings(data_dir)
    ingest = await start_ingest(settings)
    attacker = Attacker(broker)
    await asyncio.to_thread(attacker.attack_once)  # an offline attacker session exists first
    attacker.start()
    publisher = broker.device_publisher("dev-a", signer, tmp_path / "outbox.db", window=8)
    sender = asyncio.create_task(publisher.run())
    try:
        for _ in range(10):  # each tenth of the readings goes out during an attack round
            for _ in range(n // 10):
                publisher.submit(vitals())
            await wait_until(attacker.round_done(), what="an attack round")
        await asyncio.wait_for(publisher.drained(), 60)  # every reading PUBACKed
        ledger = ingest.runtime.ledger
        await wait_until(lambda: ledger.size >= 1 + n, timeout_s=30, what="every reading logged")
        await asyncio.sleep(0.5)  # anything more (a duplicate) would show up by now
        assert ledger.size == 1 + n
        seqs = [
            decode_reading(parse_sign1(LedgerEntry.decode(data).body).payload).seq
            for _, data in ledger.log.entries(1, 1 + n)
        ]
        assert sorted(seqs) == list(range(n)), "every reading exactly once"
        await wait_until(lambda: ingest.runtime.store.count() == 2 * n, what="stored once")
        metrics = ingest.runtime.metrics
        broker_drops = {"cause": "broker"}
        assert metrics.sample("vitaltrail_ingest_interruptions_total", broker_drops) == 0
    finally:
        attacker.stop.set()
        await asyncio.to_thread(attacker.join, 30)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ingest.close()
    assert attacker.granted == []
    assert attacker.refused == list(FILTERS) * attacker.rounds
    assert attacker.takeovers == 0
    assert attacker.rounds >= 21
    assert attacker.takeovers_refused == 2 * attacker.rounds


@pytest.fixture
def acl_file_broker(tmp_path: Path, broker: DeployedBroker) -> Iterator[DeployedBroker]:
    """The same users on the configuration before issue #8: a password file and an acl_file
    (``pattern write vitaltrail/v1/%u/readings``, ingestors ``topic read``)."""
    layout = SecretsLayout(tmp_path / "old")
    layout.broker.mkdir(parents=True)
    lines = []
    for user, password in broker.passwords.items():
        hashed = PasswordHash.of(password).dynsec_fields()
        lines.append(f"{user}:$7${hashed['iterations']}${hashed['salt']}${hashed['password']}")
    (layout.broker / "passwd").write_text("\n".join(lines) + "\n")
    acl = "pattern write vitaltrail/v1/%u/readings\n"
    acl += "".join(f"\nuser {name}\ntopic read vitaltrail/v1/+/readings\n" for name in INGESTORS)
    (layout.broker / "acl").write_text(acl)
    certs, port = broker.layout.broker / "certs", free_port()
    access = (
        f"allow_anonymous false\npassword_file {layout.broker / 'passwd'}\n"
        f"acl_file {layout.broker / 'acl'}\nlistener {port} 127.0.0.1\n"
        f"cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
    )
    server = Mosquitto(tmp_path / "old-mosquitto", port, access=access).start()
    yield DeployedBroker(server, broker.layout, broker.passwords)
    server.stop()


def test_on_an_acl_file_broker_the_same_attacks_lose_readings(
    acl_file_broker: DeployedBroker,
) -> None:
    """Why the deployment uses the dynamic-security plugin (docs/decisions.md)."""
    ingest = acl_file_broker.connect("ingest-a", "ingest-a", clean_start=False, session_expiry_s=60)
    device = acl_file_broker.connect("dev-a", "dev-a")
    attacker = Attacker(acl_file_broker)
    try:
        assert ingest.accepted()
        assert not ingest.subscribe(TOPICS.shared).is_failure
        attacker.attack_once()
        assert attacker.granted == list(FILTERS), "acl_file never checks a SUBSCRIBE"
        assert attacker.takeovers == len(INGESTORS), "nor binds a client id to its user"
        ingest.close()
        ingest = acl_file_broker.connect(
            "ingest-a", "ingest-a", clean_start=False, session_expiry_s=60
        )
        assert ingest.accepted()
        for _ in range(20):
            assert not device.publish("vitaltrail/v1/dev-a/readings").is_failure  # PUBACKed
        wait_for(lambda: len(ingest.received) >= 10, 10, "the ingestor's share")
        assert len(ingest.received) < 20, "the offline attacker session's share was dropped"
    finally:
        device.close()
        ingest.close()
