"""`vitaltrail bench access-trail`: what recording every access costs the ward endpoint.

A ward of ``patients`` patients (their latest vitals in the store) is served by the API on a
thread of this process, as `vitaltrail serve` serves it; a clinician of that ward's care team
asks for ``/api/v1/patients`` from a client process, twice per mode:

* open loop at ``rate`` requests/s for ``seconds`` (latency from each request's scheduled
  time, so a slow answer delays the ones after it and is counted, not hidden): p50/p99;
* closed loop, ``clients`` connections asking as fast as they are answered: requests/s.

Modes: ``on`` - the API as deployed, each decision committed to the access journal (fsync)
before the answer; ``off`` - the same decisions, not committed (a trail that records
nothing, for this comparison only: the API itself has no such switch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from access.trail import Access, AccessEvent, AccessTrail
from dashboards.app import create_app
from vitaltrail.bench.api_load import clinician_headers, fill_history
from vitaltrail.bench.ingest import _SPAWN, command_line, machine, percentile
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

WARD = "/api/v1/patients"


class UnrecordedTrail(AccessTrail):
    """The bench's "off": every access decided, none committed."""

    def record(self, access: Access) -> AccessEvent:
        return AccessEvent(self.trail_id, 1, access)


def ward_client_worker(
    port: int, headers: dict[str, str], rate: float, seconds: float, clients: int, out: Path
) -> None:
    """Open loop at ``rate``, then closed loop with ``clients``; statuses and latencies."""
    open_loop: list[tuple[int, float]] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    total = int(rate * seconds)
    next_slot = iter(range(total))

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in next_slot:  # the iterator is shared: each slot is sent once
            scheduled = start + i / rate
            time.sleep(max(0.0, scheduled - time.perf_counter()))
            conn.request("GET", WARD, headers=headers)
            response = conn.getresponse()
            response.read()
            with lock:
                open_loop.append((response.status, time.perf_counter() - scheduled))
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    closed: list[tuple[int, float]] = []
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            began = time.perf_counter()
            conn.request("GET", WARD, headers=headers)
            response = conn.getresponse()
            response.read()
            with lock:
                closed.append((response.status, time.perf_counter() - began))
        conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    out.write_text(json.dumps({"open": open_loop, "closed": closed, "closed_s": elapsed}))


def _mode(
    settings: Settings,
    mode: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    sources = data_sources(settings)
    if mode == "off":
        sources.access.trail = UnrecordedTrail(sources.access.journal)
    port = free_port()
    server = http_server(create_app(sources), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        out = work / f"{mode}.json"
        load = _SPAWN.Process(
            target=ward_client_worker,
            args=(port, headers, args.rate, args.seconds, args.clients, out),
        )
        load.start()
        load.join(args.seconds * 4 + 120)
        figures = json.loads(out.read_text())
    finally:
        server.should_exit = True
        thread.join(30)
    open_s = [s for _, s in figures["open"]]
    closed = figures["closed"]
    return {
        "open_loop": {
            "rate": args.rate,
            "requests": len(open_s),
            "errors": sum(1 for status, _ in figures["open"] if status != 200),
            "p50_ms": 1000 * percentile(open_s, 50),
            "p99_ms": 1000 * percentile(open_s, 99),
        },
        "closed_loop": {
            "clients": args.clients,
            "requests_per_s": len(closed) / figures["closed_s"],
            "errors": sum(1 for status, _ in closed if status != 200),
            "p99_ms": 1000 * percentile([s for _, s in closed], 99),
        },
    }


def run_bench_access_trail(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(
            "access-trail", args, ["patients", "rate", "seconds", "clients", "hours"]
        ),
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", check_workers=0)
        build_ingest(settings).close()  # an empty ledger, registry and store to serve from
        samples = fill_history(
            settings.store_path, args.patients, args.hours, int(time.time() * 1000)
        )
        report["store_samples"] = samples
        headers = clinician_headers(settings, [f"ward-{p:03d}" for p in range(args.patients)])
        for mode in ("off", "on"):
            report[mode] = _mode(settings, mode, headers, args, work)
    _print(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print(report: dict[str, Any]) -> None:
    print(f"command: {report['command']}")
    for mode in ("off", "on"):
        o, c = report[mode]["open_loop"], report[mode]["closed_loop"]
        print(
            f"trail {mode:>3}: {o['rate']:g} req/s open loop p50 {o['p50_ms']:.1f} ms"
            f" p99 {o['p99_ms']:.1f} ms ({o['errors']} errors);"
            f" closed loop {c['requests_per_s']:.0f} req/s with {c['clients']} clients"
            f" (p99 {c['p99_ms']:.1f} ms, {c['errors']} errors)"
        )
