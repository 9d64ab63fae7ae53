"""Test helpers: a wired ingestor on a real broker, signed messages, a raw publisher."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRegistry
from devices.vitals import HEART_RATE, SPO2
from vitaltrail.runtime import IngestRuntime, build_ingest
from vitaltrail.settings import Settings


def now_ms() -> int:
    return int(time.time() * 1000)


def vitals(time_ms: int | None = None, hr: float = 72, spo2: float = 97) -> tuple[Sample, ...]:
    t = now_ms() if time_ms is None else time_ms
    return (
        Sample(HEART_RATE.code, HEART_RATE.unit, hr, t),
        Sample(SPO2.code, SPO2.unit, spo2, t),
    )


def signed(
    device_id: str, signer: DeviceSigner, seq: int, samples: Sequence[Sample] | None = None
) -> bytes:
    return sign1(signer, encode_reading(Reading(device_id, seq, tuple(samples or vitals()))))


def forged(message: bytes) -> bytes:
    """A signed message with its signature's last bit flipped: it names the device's key and
    fails to verify (bad_signature)."""
    return message[:-1] + bytes([message[-1] ^ 1])


def register_devices(data_dir: Path, n: int, prefix: str = "dev") -> dict[str, DeviceSigner]:
    registry = DeviceRegistry(data_dir / "registry.db")
    signers = {f"{prefix}-{i:03d}": DeviceSigner.generate() for i in range(n)}
    for device_id, signer in signers.items():
        registry.register(device_id, f"patient-{device_id}", signer.key)
    registry.close()
    return signers


def settings_for(data_dir: Path, port: int, topic_root: str, **extra: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        mqtt_port=port,
        topic_root=topic_root,
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        share_group=str(extra.pop("share_group", f"g{uuid.uuid4().hex[:8]}")),
        seal_interval_s=0.2,
        **extra,  # type: ignore[arg-type]
    )


@dataclass
class RunningIngest:
    runtime: IngestRuntime
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        self.runtime.close()


async def start_ingest(settings: Settings) -> RunningIngest:
    runtime = build_ingest(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.ingestor.run(stop))
    await asyncio.wait_for(runtime.ingestor.connected.wait(), 10)
    return RunningIngest(runtime, stop, task)


def ingest_process(
    data_dir: Path, port: int, topic_root: str, client_id: str, *args: str, **env: str
) -> subprocess.Popen[bytes]:
    """`vitaltrail ingest` (with ``args``, e.g. ``--serve-api``) as its own process, logging
    next to the data directory (``<client_id>.log``; :func:`subscribed` reads it)."""
    environment = os.environ | {
        "VITALTRAIL_TOPIC_ROOT": topic_root,
        "VITALTRAIL_CLIENT_ID": client_id,
        "VITALTRAIL_BATCH_MAX": "200",
        **{f"VITALTRAIL_{k.upper()}": v for k, v in env.items()},
    }
    cmd = [
        sys.executable,
        "-m",
        "vitaltrail.cli",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "INFO",
        "ingest",
        "--mqtt-port",
        str(port),
        *args,
    ]
    with (data_dir.parent / f"{client_id}.log").open("ab") as log:
        return subprocess.Popen(cmd, env=environment, stdout=log, stderr=subprocess.STDOUT)


def subscribed(data_dir: Path, client_id: str) -> bool:
    log = data_dir.parent / f"{client_id}.log"
    return log.exists() and "subscribed to" in log.read_text(errors="replace")


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str = "condition") -> None:
    """Poll ``predicate`` from synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0)
        await asyncio.sleep(0.05)


class RawPublisher:
    """A plain paho publisher at QoS 1, for messages the device SDK would never send."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._pending: list[paho.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self._pending.append(self.client.publish(topic, payload, qos=1))

    def flush(self, timeout_s: float = 30) -> None:
        for info in self._pending:
            info.wait_for_publish(timeout_s)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
