"""Refused bytes are bounded, against a real Mosquitto with the project's configuration: the
broker's packet limit is the ingestor's message limit plus MQTT's own bytes, the ingestor
announces it in CONNECT, and the quarantine keeps to its budget while the counters count all."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from devices.publisher import readings_topic
from ingest.checks import MQTT_OVERHEAD_BYTES, Limits
from ingest.mqtt_source import MqttSource, SourceConfig
from ingest.quarantine import Quarantine
from ingest.reasons import Reason
from tests.servers import Mosquitto
from tests.stack import register_devices, settings_for, start_ingest, wait_until
from vitaltrail.bench.raw_publisher import RawMqttError, publish_paced
from vitaltrail.mosquitto import PROJECT_CONF

pytestmark = pytest.mark.integration


def test_the_broker_s_packet_limit_is_the_ingestor_s_message_limit_plus_mqtt() -> None:
    (size,) = re.findall(r"^max_packet_size (\d+)$", PROJECT_CONF.read_text(), re.MULTILINE)
    assert (
        int(size) == Limits().max_packet_bytes == Limits().max_message_bytes + MQTT_OVERHEAD_BYTES
    )
    assert MQTT_OVERHEAD_BYTES < 1024  # a few hundred bytes, not another message's worth


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    publish_paced(port, f"pub-{uuid.uuid4().hex[:8]}", messages, 0)


async def test_the_broker_sends_nothing_bigger_than_the_maximum_packet_size_announced(
    mosquitto: Mosquitto, topic_root: str
) -> None:
    config = SourceConfig(
        port=mosquitto.port,
        client_id=f"small-{uuid.uuid4().hex[:8]}",
        topic_root=topic_root,
        share_group=None,
        max_packet_bytes=1000,
        session_expiry_s=0,
    )
    topic = readings_topic(topic_root, "dev-1")
    async with MqttSource(config) as source:
        publish(mosquitto.port, [(topic, b"a" * 2000), (topic, b"b" * 100)])
        (only,) = await source.next_batch(10, 0.5)
        source.ack([only])
    assert only.payload == b"b" * 100


def test_the_broker_refuses_a_packet_past_its_limit(mosquitto: Mosquitto, topic_root: str) -> None:
    topic = readings_topic(topic_root, "dev-1")
    publish(mosquitto.port, [(topic, b"x" * Limits().max_message_bytes)])  # at the limit: taken
    with pytest.raises(RawMqttError):
        publish(mosquitto.port, [(topic, b"x" * Limits().max_packet_bytes)])


async def test_past_its_budget_the_quarantine_forgets_but_the_counters_do_not(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str
) -> None:
    signers = register_devices(data_dir, 1)
    topic = readings_topic(topic_root, next(iter(signers)))
    settings = settings_for(
        data_dir,
        mosquitto.port,
        topic_root,
        quarantine_keep_bytes=256,
        quarantine_max_mib=20_000 / 2**20,
        batch_max=10,
    )
    ingest = await start_ingest(settings)
    assert ingest.runtime.ingestor.config.source.max_packet_bytes == Limits().max_packet_bytes
    oversize = b"\x00" * (Limits().max_message_bytes + 100)  # under the broker's limit
    junk = [(topic, bytes([i]) * 2048) for i in range(60)]
    publish(mosquitto.port, [(topic, oversize), *junk])
    metrics = ingest.runtime.metrics
    await wait_until(
        lambda: (
            metrics.sample("vitaltrail_messages_received_total") == 61
            and sum(metrics.rejected_count(r) for r in Reason) == 61
        ),
        what="every message refused",
    )
    await ingest.close()
    assert metrics.rejected_count(Reason.OVERSIZE) == 1
    assert metrics.rejected_count(Reason.MALFORMED_COSE) == 60
    assert metrics.sample("vitaltrail_quarantine_truncated_total") == 61
    q = Quarantine(settings.quarantine_path, read_only=True)
    kept = q.recent(1000)
    q.close()
    evicted = metrics.sample("vitaltrail_quarantine_evicted_total", {"cause": "size"})
    assert evicted == 61 - len(kept) > 0
    assert kept[0].payload == junk[-1][1][:256]  # the newest stay, cut to the budget
    assert all(r.size == 2048 and len(r.payload) == 256 for r in kept)
    assert metrics.sample("vitaltrail_quarantine_bytes") <= 20_000
