"""`vitaltrail bench api-load`: does reading slow the intake?

The ingestor runs as `vitaltrail ingest --serve-api` runs it: the web app on the ingestor's own
event loop, over a store holding a sizeable ward history. A publisher sends pre-signed
readings at a fixed rate twice: once with no API clients, once with ``clients`` threads (in a
process of their own) repeating the ward query, series queries over that history and a FHIR
search (the first page, newest first, of a publishing device's patient's heart rate). Each
phase reports the ingest latency (publish to durable) p50/p99, ``/healthz`` p50/p99 from a
prober, and under load the API's own requests/s and latencies (see BENCHMARKING.md, "The read
side").
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from access.care_teams import CareTeamStore
from access.issuer import Issuer
from access.users import User
from ingest.sqlite_store import SqliteStore
from ingest.store import SamplePoint
from vitaltrail.bench.ingest import (
    _SPAWN,
    IngestProcess,
    Message,
    _publish,
    _settings,
    _wait_for,
    _write_batch,
    command_line,
    machine,
    percentile,
    presign,
)
from vitaltrail.mosquitto import Mosquitto, free_port
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

HEART_RATE = "8867-4"


def fill_history(store_path: Path, patients: int, hours: float, end_ms: int) -> int:
    """``patients`` patients' heart rate at 1 Hz for ``hours`` up to ``end_ms``."""
    store = SqliteStore(store_path)
    per_patient = int(hours * 3600)
    start = end_ms - per_patient * 1000
    try:
        for p in range(patients):
            patient = f"ward-{p:03d}"
            for first in range(0, per_patient, 50_000):
                store.write(
                    [
                        SamplePoint(
                            patient,
                            f"{patient}-band",
                            i,
                            0,
                            i,
                            HEART_RATE,
                            "/min",
                            60 + (i * 7 + p) % 50,
                            start + i * 1000,
                        )
                        for i in range(first, min(per_patient, first + 50_000))
                    ]
                )
    finally:
        store.close()
    return patients * per_patient


def query_paths(
    patients: int, hours: float, end_ms: int, bucket_s: int, live: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The readers' queries: the ward, a day's series of the store's history, and a FHIR
    search's first page (newest first) of the ``live`` patients, whose readings arrive as
    the clients read (the observation index catching up with the ledger before each)."""
    start = end_ms - int(hours * 3_600_000)
    return {
        "ward": ["/api/v1/patients"],
        "series": [
            f"/api/v1/patients/ward-{p:03d}/vitals/{HEART_RATE}"
            f"?start_ms={start}&end_ms={end_ms}&bucket_s={bucket_s}"
            for p in range(patients)
        ],
        "fhir": [
            f"/fhir/Observation?patient={p}&code=http://loinc.org|{HEART_RATE}"
            "&_sort=-date&_count=100"
            for p in live
        ],
    }


def api_clients_worker(
    port: int,
    paths: dict[str, list[str]],
    clients: int,
    seconds: float,
    out: Path,
    headers: dict[str, str] | None = None,
) -> None:
    """``clients`` closed-loop clients (each: a series query, the ward, a FHIR search if there
    are any, and again) and a ``/healthz`` prober at 20 Hz, for ``seconds``; each request's
    kind, status and latency."""
    stop = time.monotonic() + seconds
    results: dict[str, list[tuple[int, float]]] = {
        "ward": [], "series": [], "fhir": [], "healthz": []
    }  # fmt: skip
    lock = threading.Lock()

    def get(conn: http.client.HTTPConnection, kind: str, path: str) -> None:
        start = time.perf_counter()
        conn.request("GET", path, headers=(headers or {}) if kind != "healthz" else {})
        response = conn.getresponse()
        response.read()
        with lock:
            results[kind].append((response.status, time.perf_counter() - start))

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            get(conn, "series", rng.choice(paths["series"]))
            get(conn, "ward", paths["ward"][0])
            if paths.get("fhir"):
                get(conn, "fhir", rng.choice(paths["fhir"]))
        conn.close()

    def prober() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            get(conn, "healthz", "/healthz")
            time.sleep(0.05)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=prober))
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    out.write_text(json.dumps({"elapsed_s": elapsed, "results": results}))


def clinician_headers(settings: Settings, patients: Sequence[str]) -> dict[str, str]:
    """The API's rules hold in a bench too: a clinician whose care team is the ward, with a
    token of the embedded issuer that outlives the run (an hour)."""
    teams = CareTeamStore(settings.access_db_path)
    teams.create("bench ward")
    teams.add_member("bench ward", "bench-clinician")
    for patient in patients:
        teams.add_patient("bench ward", patient)
    teams.close()
    config = dataclasses.replace(issuer_config(settings), token_ttl_s=3600)
    issuer = Issuer.open(settings.data_dir, config, key_path=settings.token_key_path)
    token = issuer.token_for(User("bench-clinician", "clinician")).access_token
    issuer.close()
    return {"Authorization": f"Bearer {token}"}


def _latencies(samples: Sequence[Sequence[float]]) -> dict[str, float]:
    seconds = [s for _, s in samples]
    return {
        "count": len(seconds),
        "p50_ms": 1000 * percentile(seconds, 50),
        "p99_ms": 1000 * percentile(seconds, 99),
    }


def _phase(
    name: str,
    port: int,
    http_port: int,
    settings_topic: str,
    messages: Sequence[Message],
    rate: float,
    clients: int,
    paths: dict[str, list[str]],
    work: Path,
    headers: dict[str, str],
) -> dict[str, Any]:
    """Publish ``messages`` at ``rate`` with ``clients`` API clients; the API's figures and the
    publish times (joined with the ingestor's durable times at the end)."""
    seconds = len(messages) / rate
    out = work / f"{name}-clients.json"
    load = _SPAWN.Process(
        target=api_clients_worker, args=(http_port, paths, clients, seconds + 2, out, headers)
    )
    load.start()
    time.sleep(1)  # the clients are up to speed before the first reading
    published = _publish(
        port, _write_batch(work / f"{name}.pkl", settings_topic, messages), rate, work
    )
    load.join(seconds + 120)
    figures = json.loads(out.read_text())
    results = figures["results"]
    api: dict[str, Any] = {"healthz": _latencies(results["healthz"])}
    if clients:
        answered = results["series"] + results["ward"] + results["fhir"]
        api |= {
            "requests_per_s": len(answered) / figures["elapsed_s"],
            "errors": sum(1 for status, _ in answered if status != 200),
            "series": _latencies(results["series"]),
            "ward": _latencies(results["ward"]),
            "fhir": _latencies(results["fhir"]),
        }
    return {"api": api, "sent_ns": published["sent_ns"]}


def run_bench_api_load(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(
            "api-load", args, ["rate", "seconds", "clients", "patients", "hours", "devices"]
        ),
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        try:
            per_phase = int(args.rate * args.seconds)
            warm_up = int(args.rate * 2)  # the ingestor's first seconds: not measured
            signers, messages = presign(args.devices, warm_up + 2 * per_phase)
            settings = _settings(work, broker.port, "api", signers, None)
            settings = settings.model_copy(update={"http_port": free_port()})
            end_ms = int(time.time() * 1000)
            started = time.perf_counter()
            samples = fill_history(settings.store_path, args.patients, args.hours, end_ms)
            print(
                f"store: {samples:,} samples ({args.patients} patients, {args.hours:g} h at 1 Hz)"
                f" written in {time.perf_counter() - started:.0f}s"
            )
            report["store_samples"] = samples
            report["api_reads"] = {
                "threads": settings.api_read_threads,
                "nice": settings.api_read_nice,
                "max_pending": settings.api_max_pending_reads,
            }
            live = sorted({f"patient-{d}" for d in signers})[: args.patients]
            paths = query_paths(args.patients, args.hours, end_ms, args.bucket_s, live)
            ward = [f"ward-{p:03d}" for p in range(args.patients)]
            headers = clinician_headers(settings, [*ward, *live])
            ingest = IngestProcess(settings, work, "api", serve_api=True).start()
            phases: dict[str, Any] = {}
            sent: dict[tuple[str, int], int] = {}
            _publish(
                broker.port,
                _write_batch(work / "warm-up.pkl", settings.topic_root, messages[:warm_up]),
                args.rate,
                work,
            )
            for name, clients, chunk in (
                ("quiet", 0, messages[warm_up : warm_up + per_phase]),
                ("loaded", args.clients, messages[warm_up + per_phase :]),
            ):
                phase = _phase(
                    name,
                    broker.port,
                    settings.http_port,
                    settings.topic_root,
                    chunk,
                    args.rate,
                    clients,
                    paths,
                    work,
                    headers,
                )
                sent_ns = phase.pop("sent_ns")
                for (device, seq, _), ns in zip(chunk, sent_ns, strict=True):
                    sent[(device, seq)] = ns
                phase["keys"] = {(d, s) for d, s, _ in chunk}
                phases[name] = phase
            _wait_for(settings, len(signers) + len(messages), 120)
            result = ingest.finish()
        finally:
            broker.stop()
    durable = {(d, s): ns for d, s, _, ns in result["durable"]}
    report["rate"] = args.rate
    report["clients"] = args.clients
    for name, phase in phases.items():
        keys = phase.pop("keys")
        latencies = [(durable[k] - sent[k]) / 1e6 for k in keys if k in durable]
        phase["ingest"] = {
            "published": len(keys),
            "lost": len(keys) - len(latencies),
            "publish_to_durable_p50_ms": percentile(latencies, 50),
            "publish_to_durable_p99_ms": percentile(latencies, 99),
        }
        report[name] = phase
    report["peak_rss_mib"] = result["peak_rss_kib"] / 1024
    _print(report)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print(report: dict[str, Any]) -> None:
    quiet, loaded = report["quiet"], report["loaded"]
    reads = report["api_reads"]
    print(
        f"live ingest at {report['rate']:,} msg/s; API on the ingestor's event loop, its reads on"
        f" {reads['threads']} threads at nice +{reads['nice']}"
    )
    print(f"{'':28}{'no API load':>16}{report['clients']:>10} clients")
    rows = [
        ("ingest p50 (ms)", "ingest", "publish_to_durable_p50_ms"),
        ("ingest p99 (ms)", "ingest", "publish_to_durable_p99_ms"),
        ("readings lost", "ingest", "lost"),
    ]
    for label, group, key in rows:
        print(f"{label:28}{quiet[group][key]:>16,.0f}{loaded[group][key]:>18,.0f}")
    for label, key in (("/healthz p50 (ms)", "p50_ms"), ("/healthz p99 (ms)", "p99_ms")):
        print(
            f"{label:28}{quiet['api']['healthz'][key]:>16,.1f}{loaded['api']['healthz'][key]:>18,.1f}"
        )
    api = loaded["api"]
    print(
        f"API under load: {api['requests_per_s']:,.1f} requests/s, {api['errors']} errors;"
        f" series p50 {api['series']['p50_ms']:,.0f} ms p99 {api['series']['p99_ms']:,.0f} ms;"
        f" ward p50 {api['ward']['p50_ms']:,.0f} ms p99 {api['ward']['p99_ms']:,.0f} ms;"
        f" FHIR first page p50 {api['fhir']['p50_ms']:,.0f} ms p99 {api['fhir']['p99_ms']:,.0f} ms"
    )
