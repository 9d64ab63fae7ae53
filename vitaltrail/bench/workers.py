"""The processes a benchmark run starts: an instrumented ingestor and a paced publisher.

Each runs in its own process (multiprocessing, spawn) so that the ingestor's CPU time and
peak memory are its own, as they would be in production.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import resource
import time
import uuid
from collections import Counter
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

from ingest.pipeline import BatchResult
from ledger.blocks import Block
from vitaltrail.bench.raw_publisher import publish_paced
from vitaltrail.runtime import api_server, build_ingest
from vitaltrail.settings import Settings


def ingest_worker(
    settings_json: str,
    out: Path,
    ready: MpEvent,
    stop: MpEvent,
    serve_api: bool = False,
    handled: Synchronized[int] | None = None,
) -> None:
    """Run the real ingestor; record when each reading became durable and each block sealed.

    ``serve_api``: also serve the web app on the ingestor's event loop, as `vitaltrail ingest
    --serve-api` does. ``handled`` counts the messages made durable or refused so far."""
    settings = Settings.model_validate_json(settings_json)
    durable: list[tuple[str, int, int, int]] = []  # (device, seq, index, ns)
    sealed: list[tuple[int, int]] = []  # (tree size, ns)
    rejected: Counter[str] = Counter()
    quarantine: Counter[str] = Counter()
    connected_ns = 0

    def on_durable(result: BatchResult, done_ns: int) -> None:
        durable.extend((d, s, i, done_ns) for d, s, i in result.recorded)
        rejected.update({reason.value: n for reason, n in result.rejected.items()})
        quarantine["truncated"] += result.quarantined.truncated
        quarantine["evicted"] += result.quarantined.evicted
        if handled is not None:
            handled.value += result.accepted + result.duplicates + sum(result.rejected.values())

    def on_sealed(block: Block, done_ns: int) -> None:
        sealed.append((block.tree_size, done_ns))

    async def main() -> None:
        nonlocal connected_ns
        runtime = build_ingest(settings, on_durable=on_durable, on_sealed=on_sealed)
        stop_event = asyncio.Event()
        task = asyncio.create_task(runtime.ingestor.run(stop_event))
        server = api_server(settings, runtime, gc_freeze=True) if serve_api else None
        web = asyncio.create_task(server.serve()) if server else None
        await runtime.ingestor.connected.wait()
        while server is not None and not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
            await asyncio.sleep(0.05)
        connected_ns = time.time_ns()
        ready.set()
        await asyncio.to_thread(stop.wait)
        stop_event.set()
        await task
        if server is not None and web is not None:
            server.should_exit = True
            await web
        runtime.close()

    asyncio.run(main())
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the check pool, shut down by now
    result = {
        "check_workers_peak_rss_kib": workers.ru_maxrss,
        "rejected": dict(rejected),
        "quarantine": dict(quarantine),
        "durable": durable,
        "sealed": sealed,
        "peak_rss_kib": own.ru_maxrss,
        "connected_ns": connected_ns,
        "cpu_s": own.ru_utime + own.ru_stime,
        "check_workers_cpu_s": workers.ru_utime + workers.ru_stime,
    }
    out.write_bytes(pickle.dumps(result))


def publish_worker(port: int, messages: Path, rate: float, out: Path) -> None:
    """Publish pre-signed (topic, payload) pairs at ``rate`` msg/s (0: as fast as possible)."""
    batch: list[tuple[str, bytes]] = pickle.loads(messages.read_bytes())  # noqa: S301 - our own file
    sent_ns, elapsed = publish_paced(port, f"bench-pub-{uuid.uuid4().hex[:6]}", batch, rate)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime
    out.write_text(json.dumps({"sent_ns": sent_ns, "elapsed_s": elapsed, "cpu_s": cpu_s}))
