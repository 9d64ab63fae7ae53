"""`vitaltrail bench ingest`: the pipeline's throughput and latency beside this machine's ceilings.

One run, one Mosquitto (the project's configuration), on this machine:

* ceilings - Ed25519 verifications/s on one core (libsodium and `cryptography`), and a
  subscriber that only counts and acks draining a QoS 1 backlog with the ingestor's own MQTT
  client code (paho through :class:`~ingest.mqtt_source.MqttSource`);
* backlog drain - the ingestor's own rate: a backlog queued in the broker for its persistent
  session, then timed until every message is durable (and sealed); nothing competes for CPU;
* live - a publisher process at a steady rate; publish-to-durable and reading-to-sealed
  latencies per message, messages lost, and the ingestor's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pickle
import platform
import subprocess
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRegistry
from devices.vitals import HEART_RATE
from ingest.mqtt_source import MqttSource, SourceConfig
from ledger.ledger import LedgerReader
from vitaltrail.bench.workers import ingest_worker, publish_worker
from vitaltrail.influxdb import Influxd
from vitaltrail.mosquitto import Mosquitto, mosquitto_binary
from vitaltrail.settings import Settings

Message = tuple[str, int, bytes]  # device, seq, payload

_SPAWN = multiprocessing.get_context("spawn")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def command_line(bench: str, args: argparse.Namespace, flags: Sequence[str]) -> str:
    """The command that repeats this run, for the report (``flags``: argparse dest names)."""
    given = " ".join(
        f"--{name.replace('_', '-')} {_flag_value(getattr(args, name))}" for name in flags
    )
    return f"vitaltrail bench {bench} {given}"


def _flag_value(value: object) -> str:
    """A flag's value as typed: a list (``nargs``) as its items, space-separated."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def conclude(
    report: dict[str, Any], args: argparse.Namespace, show: Callable[[dict[str, Any]], None]
) -> int:
    """A run's end: the load average after it, its figures printed and, with ``--output``,
    kept as JSON. Its ``load_average_before`` was taken at the start."""
    report["load_average_after"] = os.getloadavg()
    print(f"command: {report['command']}")
    before, after = report["load_average_before"][0], report["load_average_after"][0]
    print(f"load average (1 min): {before:.2f} before, {after:.2f} after")
    show(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    version = subprocess.run(
        [mosquitto_binary(), "-h"], capture_output=True, text=True, check=False
    )
    import paho.mqtt

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "mosquitto": version.stdout.splitlines()[0] if version.stdout else "unknown",
        "paho_mqtt": paho.mqtt.__version__,
    }


def verify_ceiling(n: int = 20_000) -> dict[str, float]:
    """Raw Ed25519 verifications per second on one core."""
    signer = DeviceSigner.generate()
    message = b"x" * 200
    signature = signer.sign(message)
    start = time.perf_counter()
    for _ in range(n):
        signer.key.verify(signature, message)
    libsodium = n / (time.perf_counter() - start)
    private = Ed25519PrivateKey.generate()
    public, sig = private.public_key(), private.sign(message)
    start = time.perf_counter()
    for _ in range(n):
        public.verify(sig, message)
    return {"libsodium_per_s": libsodium, "cryptography_per_s": n / (time.perf_counter() - start)}


def presign(devices: int, total: int) -> tuple[dict[str, DeviceSigner], list[Message]]:
    """Single-reading messages, round-robin over devices, signed before any timing starts."""
    signers = {f"bench-{i:04d}": DeviceSigner.generate() for i in range(devices)}
    ids = list(signers)
    now = int(time.time() * 1000)
    messages: list[Message] = []
    for n in range(total):
        device_id = ids[n % devices]
        seq = n // devices
        sample = Sample(HEART_RATE.code, HEART_RATE.unit, 60 + n % 40, now)
        payload = sign1(signers[device_id], encode_reading(Reading(device_id, seq, (sample,))))
        messages.append((device_id, seq, payload))
    return signers, messages


def _write_batch(path: Path, topic_root: str, messages: Sequence[Message]) -> Path:
    path.write_bytes(pickle.dumps([(readings_topic(topic_root, d), p) for d, _, p in messages]))
    return path


def _publish(port: int, batch: Path, rate: float, work: Path) -> dict[str, Any]:
    out = work / f"{batch.stem}-published.json"
    proc = _SPAWN.Process(target=publish_worker, args=(port, batch, rate, out))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError("the publisher process failed")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


async def _count_drain(config: SourceConfig, total: int) -> float:
    async with MqttSource(config) as source:
        start = time.perf_counter()
        received = 0
        while received < total:
            batch = await source.next_batch(5000, 0.001)
            source.ack(batch)
            received += len(batch)
        return total / (time.perf_counter() - start)


def raw_drain_ceiling(port: int, messages: Sequence[Message], work: Path) -> float:
    """A subscriber that only counts and acks, draining a backlog queued for its session."""
    topic_root = "bench-raw/vitaltrail/v1"
    config = SourceConfig(
        port=port, client_id="bench-counter", topic_root=topic_root, share_group="count"
    )

    async def subscribe_only() -> None:
        async with MqttSource(config):
            pass

    asyncio.run(subscribe_only())
    _publish(port, _write_batch(work / "raw.pkl", topic_root, messages), 0, work)
    return asyncio.run(_count_drain(config, len(messages)))


class IngestProcess:
    """The real ingestor in its own process, instrumented per message."""

    def __init__(
        self, settings: Settings, work: Path, name: str, *, serve_api: bool = False
    ) -> None:
        self.out = work / f"{name}-ingest.pkl"
        self.ready = _SPAWN.Event()
        self.stop = _SPAWN.Event()
        self.handled = _SPAWN.Value("q", 0)  # messages made durable or refused
        self.proc = _SPAWN.Process(
            target=ingest_worker,
            args=(settings.model_dump_json(), self.out, self.ready, self.stop),
            kwargs={"serve_api": serve_api, "handled": self.handled},
        )

    def start(self) -> IngestProcess:
        self.proc.start()
        if not self.ready.wait(60):
            raise RuntimeError("the ingestor did not connect")
        return self

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.proc.join(120)
        if self.proc.exitcode != 0:
            raise RuntimeError("the ingestor process failed")
        result: dict[str, Any] = pickle.loads(self.out.read_bytes())  # noqa: S301 - our own file
        return result


def _ledger_size(settings: Settings) -> int:
    reader = LedgerReader(settings.ledger_location)
    try:
        return reader.log.stored_size()
    finally:
        reader.close()


def _settings(
    work: Path, port: int, name: str, signers: dict[str, DeviceSigner], influx_url: str | None
) -> Settings:
    settings = Settings(
        data_dir=work / name,
        mqtt_port=port,
        topic_root=f"bench-{name}/vitaltrail/v1",
        client_id=f"bench-{name}-ingest",
        share_group=name,
        log_level="WARNING",
        influx_url=influx_url,
        influx_database=f"bench_{name}",
    )
    settings.data_dir.mkdir(parents=True)
    registry = DeviceRegistry(settings.registry_path)
    for device_id, signer in signers.items():
        registry.register(device_id, f"patient-{device_id}", signer.key)
    registry.close()
    return settings


def _wait_for(settings: Settings, total: int, timeout_s: float) -> None:
    """Until ``total`` entries (the devices' key registrations, then the readings) are logged."""
    deadline = time.monotonic() + timeout_s
    while _ledger_size(settings) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # the last block seals within one interval


def backlog_drain(
    port: int,
    signers: dict[str, DeviceSigner],
    messages: Sequence[Message],
    work: Path,
    influx_url: str | None = None,
) -> dict[str, Any]:
    settings = _settings(work, port, "drain", signers, influx_url)
    IngestProcess(settings, work, "drain-setup").start().finish()  # creates the persistent session
    _publish(port, _write_batch(work / "drain.pkl", settings.topic_root, messages), 0, work)
    ingest = IngestProcess(settings, work, "drain").start()
    _wait_for(settings, len(signers) + len(messages), 600)
    result = ingest.finish()
    durable = result["durable"]
    last_durable = max(ns for *_, ns in durable)
    last_sealed = max(ns for _, ns in result["sealed"])
    elapsed = (last_durable - result["connected_ns"]) / 1e9
    return {
        "messages": len(messages),
        "recorded": len(durable),
        "durable_per_s": len(durable) / elapsed,
        "seconds_to_durable": elapsed,
        "seconds_to_sealed": (last_sealed - result["connected_ns"]) / 1e9,
        "peak_rss_mib": result["peak_rss_kib"] / 1024,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live(
    broker: Mosquitto,
    signers: dict[str, DeviceSigner],
    messages: Sequence[Message],
    rate: float,
    work: Path,
    influxd: Influxd | None = None,
) -> dict[str, Any]:
    port = broker.port
    assert broker.process is not None
    settings = _settings(work, port, "live", signers, influxd.url if influxd else None)
    ingest = IngestProcess(settings, work, "live").start()
    servers = {"mosquitto": broker.process.pid}
    if influxd is not None and influxd.process is not None:
        servers["influxd"] = influxd.process.pid
    server_cpu = {name: _cpu_seconds(pid) for name, pid in servers.items()}
    published = _publish(
        port, _write_batch(work / "live.pkl", settings.topic_root, messages), rate, work
    )
    _wait_for(settings, len(signers) + len(messages), 120)
    server_cpu = {name: _cpu_seconds(pid) - server_cpu[name] for name, pid in servers.items()}
    result = ingest.finish()
    sent = {(d, s): ns for (d, s, _), ns in zip(messages, published["sent_ns"], strict=True)}
    durable = {(d, s): (i, ns) for d, s, i, ns in result["durable"]}
    seal_sizes = [size for size, _ in result["sealed"]]
    seal_times = [ns for _, ns in result["sealed"]]
    to_durable, to_sealed = [], []
    for key, (index, done_ns) in durable.items():
        to_durable.append((done_ns - sent[key]) / 1e6)
        block = bisect_right(seal_sizes, index)
        if block < len(seal_sizes):
            to_sealed.append((seal_times[block] - sent[key]) / 1e6)
    first_sent = min(published["sent_ns"])
    last_durable = max(ns for _, ns in durable.values())
    return {
        "offered_per_s": rate,
        "published": len(messages),
        "publish_seconds": published["elapsed_s"],
        "recorded": len(durable),
        "lost": len(messages) - len(durable),
        "sustained_per_s": len(durable) / ((last_durable - first_sent) / 1e9),
        "publish_to_durable_ms": {
            "p50": percentile(to_durable, 50),
            "p99": percentile(to_durable, 99),
        },
        "reading_to_sealed_ms": {
            "p50": percentile(to_sealed, 50),
            "p99": percentile(to_sealed, 99),
        },
        "peak_rss_mib": result["peak_rss_kib"] / 1024,
        "cpu_us_per_message": {
            "ingestor": 1e6 * result["cpu_s"] / len(messages),
            "check_worker": 1e6 * result["check_workers_cpu_s"] / len(messages),
            "publisher": 1e6 * published["cpu_s"] / len(messages),
            **{name: 1e6 * cpu / len(messages) for name, cpu in server_cpu.items()},
        },
    }


def run_bench_ingest(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(
            "ingest", args, ["messages", "rate", "live_seconds", "devices", "store"]
        ),
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        influxd = Influxd(work / "influxd").start() if args.store == "influxdb" else None
        influx_url = influxd.url if influxd else None
        try:
            report["verify_ceiling"] = verify_ceiling()
            print(
                f"ceiling: Ed25519 verify {report['verify_ceiling']['libsodium_per_s']:,.0f}/s per core (libsodium), "
                f"{report['verify_ceiling']['cryptography_per_s']:,.0f}/s (cryptography)"
            )
            live_total = int(args.rate * args.live_seconds)
            signers, messages = presign(args.devices, max(args.messages, live_total))
            report["raw_drain_per_s"] = raw_drain_ceiling(
                broker.port, messages[: args.messages], work
            )
            print(f"ceiling: count-only subscriber drains {report['raw_drain_per_s']:,.0f} msg/s")
            report["backlog_drain"] = drain = backlog_drain(
                broker.port, signers, messages[: args.messages], work, influx_url
            )
            print(
                f"backlog drain: {drain['recorded']:,}/{drain['messages']:,} durable at {drain['durable_per_s']:,.0f} msg/s "
                f"({drain['durable_per_s'] / report['raw_drain_per_s']:.0%} of the subscriber ceiling), "
                f"all sealed after {drain['seconds_to_sealed']:.1f}s, peak RSS {drain['peak_rss_mib']:.0f} MiB"
            )
            report["live"] = result = live(
                broker, signers, messages[:live_total], args.rate, work, influxd
            )
            print(
                f"live at {args.rate:,} msg/s for {args.live_seconds:.0f}s: {result['recorded']:,} recorded, "
                f"{result['lost']} lost, sustained {result['sustained_per_s']:,.0f} msg/s; publish->durable "
                f"p50 {result['publish_to_durable_ms']['p50']:.0f} ms p99 {result['publish_to_durable_ms']['p99']:.0f} ms; "
                f"reading->sealed p99 {result['reading_to_sealed_ms']['p99']:.0f} ms; peak RSS {result['peak_rss_mib']:.0f} MiB"
            )
        finally:
            broker.stop()
            if influxd is not None:
                influxd.stop()
    report["ratios"] = {
        "drain_vs_subscriber_ceiling": report["backlog_drain"]["durable_per_s"]
        / report["raw_drain_per_s"],
        "drain_vs_verify_ceiling": report["backlog_drain"]["durable_per_s"]
        / report["verify_ceiling"]["libsodium_per_s"],
    }
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    cpu = {k: round(v) for k, v in report["live"]["cpu_us_per_message"].items()}
    print(f"live CPU per message (µs): {cpu}")
    print(json.dumps(report["ratios"]))
    return 0
