"""`vitaltrail bench hostile`: the ingestor's memory over a backlog of messages it refuses.

A backlog of ``messages`` hostile messages is queued in a real Mosquitto (the project's
configuration, persistence off) for the ingestor's persistent session: a share at the
broker's packet limit (refused as oversize), the rest small junk (not COSE), readings signed
by unknown keys and readings of registered devices with forged signatures. Then the real
ingestor drains it, and the bench samples its resident memory (and its check workers') the
whole time, and reports the peak beside the bound the limits give: at most
``receive_maximum`` messages of at most ``max_packet_bytes`` each are in the ingestor at once.
Last, the quarantine's size on disk against its budget.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, Sample, encode_reading
from devices.vitals import HEART_RATE
from ingest.checks import Limits
from ingest.mqtt_source import SourceConfig
from ingest.quarantine import Quarantine
from vitaltrail.bench.ingest import IngestProcess, _settings, machine
from vitaltrail.bench.raw_publisher import publish_paced, publish_packet
from vitaltrail.mosquitto import Mosquitto

POOL = 997  # distinct messages of each kind, cycled
CHUNK = 50_000  # messages per publisher connection


def _payload_filling(topic: str, packet_bytes: int) -> int:
    """The payload length that makes a PUBLISH on ``topic`` exactly ``packet_bytes`` long."""
    length = packet_bytes - len(publish_packet(topic, 1, b""))
    while len(publish_packet(topic, 1, b"\x00" * length)) > packet_bytes:
        length -= 1
    return length


def hostile_pools(
    topic_root: str, signers: dict[str, DeviceSigner], rng: random.Random
) -> dict[str, list[tuple[str, bytes]]]:
    devices = list(signers)
    strangers = [DeviceSigner.generate() for _ in range(8)]
    now = int(time.time() * 1000)

    def reading(i: int) -> tuple[str, bytes]:
        device = devices[i % len(devices)]
        sample = Sample(HEART_RATE.code, HEART_RATE.unit, 70, now)
        return device, encode_reading(Reading(device, 10**6 + i, (sample,)))

    pools: dict[str, list[tuple[str, bytes]]] = {"max_size": [], "junk": [], "unknown_key": []}
    pools["forged"] = []
    for i in range(POOL):
        device, body = reading(i)
        topic = readings_topic(topic_root, device)
        size = _payload_filling(topic, Limits().max_packet_bytes)
        pools["max_size"].append((topic, rng.randbytes(size)))
        pools["junk"].append((topic, rng.randbytes(rng.randint(16, 1024))))
        pools["unknown_key"].append((topic, sign1(strangers[i % len(strangers)], body)))
        genuine = sign1(signers[device], body)
        pools["forged"].append((topic, genuine[:-64] + rng.randbytes(64)))
    return pools


def hostile_backlog(
    pools: dict[str, list[tuple[str, bytes]]], n: int, max_size_share: float, rng: random.Random
) -> Iterator[tuple[str, bytes]]:
    others = ["junk", "unknown_key", "forged"]
    for i in range(n):
        kind = "max_size" if rng.random() < max_size_share else others[i % len(others)]
        yield pools[kind][i % POOL]


def _rss_kib(pid: int) -> int:
    """Resident memory of a process (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0
    )


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RssSampler:
    """Samples a process's and its children's resident memory every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.peak_with_children_kib = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        start = time.monotonic()
        while not self._stop.wait(interval_s):
            own = _rss_kib(self.pid)
            total = own + sum(_rss_kib(c) for c in _children(self.pid))
            self.peak_kib = max(self.peak_kib, own)
            self.peak_with_children_kib = max(self.peak_with_children_kib, total)
            self.samples.append((time.monotonic() - start, own))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def run_bench_hostile(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": f"vitaltrail bench hostile --messages {args.messages}"
        f" --max-size-share {args.max_size_share}",
    }
    print(f"machine: {report['machine']}")
    limits, source = Limits(), SourceConfig()
    window_mib = source.receive_maximum * limits.max_packet_bytes / 2**20
    rng = random.Random(8)
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", extra_conf="persistence false\n").start()
        assert broker.process is not None
        try:
            signers = {f"bench-{i:03d}": DeviceSigner.generate() for i in range(10)}
            settings = _settings(work, broker.port, "hostile", signers, None)
            idle = IngestProcess(settings, work, "hostile-setup").start().finish()  # the session
            pools = hostile_pools(settings.topic_root, signers, rng)
            backlog = hostile_backlog(pools, args.messages, args.max_size_share, rng)
            started, queued_bytes = time.perf_counter(), 0
            for first in range(0, args.messages, CHUNK):
                chunk = [next(backlog) for _ in range(min(CHUNK, args.messages - first))]
                queued_bytes += sum(len(p) for _, p in chunk)
                publish_paced(broker.port, f"hostile-{first}", chunk, 0)
            print(
                f"queued {args.messages:,} hostile messages ({queued_bytes / 2**30:.2f} GiB)"
                f" in {time.perf_counter() - started:.0f}s; broker RSS"
                f" {_rss_kib(broker.process.pid) / 2**10:,.0f} MiB"
            )
            ingest = IngestProcess(settings, work, "hostile")
            started = time.perf_counter()
            ingest.proc.start()
            assert ingest.proc.pid is not None
            sampler = RssSampler(ingest.proc.pid)
            if not ingest.ready.wait(60):
                raise RuntimeError("the ingestor did not connect")
            deadline, shown = time.monotonic() + 3600, time.monotonic()
            while ingest.handled.value < args.messages and time.monotonic() < deadline:
                time.sleep(0.5)
                if time.monotonic() - shown >= 30:
                    shown = time.monotonic()
                    print(f"  {ingest.handled.value:,} refused", flush=True)
            drained_s = time.perf_counter() - started
            result = ingest.finish()
            sampler.stop()
            q = Quarantine(settings.quarantine_path)
            rows, stored = sum(q.counts().values()), q.stored_bytes
            q.close()
            on_disk = _file_bytes(settings.quarantine_path)
        finally:
            broker.stop()
    report |= {
        "messages": args.messages,
        "max_size_share": args.max_size_share,
        "queued_gib": queued_bytes / 2**30,
        "handled": ingest.handled.value,
        "drain_seconds": drained_s,
        "drain_per_s": ingest.handled.value / drained_s,
        "rejected": result["rejected"],
        "ingestor_idle_peak_rss_mib": idle["peak_rss_kib"] / 1024,
        "ingestor_peak_rss_mib": result["peak_rss_kib"] / 1024,
        "ingestor_peak_rss_sampled_mib": sampler.peak_kib / 1024,
        "with_check_workers_peak_rss_mib": sampler.peak_with_children_kib / 1024,
        "check_worker_peak_rss_mib": result["check_workers_peak_rss_kib"] / 1024,
        "rss_mib_at": {
            f"{t:.0f}s": kib / 1024
            for t, kib in sampler.samples[:: max(1, len(sampler.samples) // 12)]
        },
        "in_flight_bound_mib": window_mib,
        "quarantine": {
            "rows": rows,
            "stored_mib": stored / 2**20,
            "on_disk_mib": on_disk / 2**20,
            "budget_mib": settings.quarantine_max_mib,
            "truncated": result["quarantine"].get("truncated", 0),
            "evicted": result["quarantine"].get("evicted", 0),
        },
    }
    q = report["quarantine"]
    print(
        f"drained {report['handled']:,} refused messages in {drained_s:.0f}s"
        f" ({report['drain_per_s']:,.0f}/s): {report['rejected']}"
    )
    print(
        f"ingestor peak RSS {report['ingestor_peak_rss_mib']:,.0f} MiB (idle:"
        f" {report['ingestor_idle_peak_rss_mib']:,.0f} MiB; with its check workers"
        f" {report['with_check_workers_peak_rss_mib']:,.0f} MiB); the messages in flight are at"
        f" most {source.receive_maximum:,} x {limits.max_packet_bytes:,} B = {window_mib:,.0f} MiB"
    )
    print(
        f"quarantine: {q['rows']:,} records, {q['stored_mib']:,.1f} MiB stored,"
        f" {q['on_disk_mib']:,.1f} MiB on disk (budget {q['budget_mib']:g} MiB);"
        f" {q['truncated']:,} cut to {settings.quarantine_keep_bytes} B, {q['evicted']:,} evicted"
    )
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0
