"""`vitaltrail bench ward`: the ward summary and the alert engine at a ward's size.

The data: ``patients`` patients, each a wristband that signed ``readings`` readings of six
vitals (pulse, SpO2, respiration, temperature, blood pressure) 30 s apart up to now, through
the ingest pipeline as the ingestor takes them, and sealed. The ward is mixed as a real one is:
most patients well, some scoring low, some a single 3, some urgent or emergency, some with a
blood pressure gone stale; half have consciousness and air documented by a nurse. One care
team holds them all and one clinician, whose token the client carries.

The server: the API in a process of its own, as `vitaltrail serve` runs it, trail on (each
summary's listing decision committed before the answer), its alert engine on its timer,
warmed up. The load: ``clients`` closed-loop clients in another process asking
``GET /api/v1/ward`` for ``seconds``. Reported: requests/s, p50/p99/max and the answer's size.

The ceiling, in this process in the same run: the same summary without HTTP, tokens, policy or
trail - the store's latest values and the documented values read, every patient scored and
the JSON made - and the summary alone from values already read; and one round of the alert
engine over the ward (``clinical.alert_engine.evaluate_ward``), which the API runs on its timer.
The ratio of the server's p99 to the ceiling's says what HTTP, the token, the policy and the
trail's commit cost.

Then, unless ``--alert-probes 0``: the time from a threshold-crossing reading's publish to its
alert arriving on a ward page's stream while the ingestor takes ``--alert-rate`` readings/s of
the other patients (``vitaltrail.bench.alert_latency``: Mosquitto, the ingestor with the API
on its loop, the clinician's ``/api/v1/alerts/stream`` open).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from access.care_teams import CareTeamStore
from access.issuer import Issuer
from access.users import User
from clinical.alert_engine import evaluate_ward
from clinical.alert_store import AlertStore
from clinical.alerts import AlertConfig, Event
from clinical.documented import DocumentedStore, Kind, Observation
from dashboards.ward_routes import summary
from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRegistry
from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    Vital,
)
from ingest.mqtt_source import InboundMessage
from vitaltrail.bench.alert_latency import as_dict, measure_alert_latency
from vitaltrail.bench.fhir import _figures, api_process
from vitaltrail.bench.fhir_clients import clients_worker
from vitaltrail.bench.ingest import _SPAWN, command_line, conclude, machine, percentile
from vitaltrail.mosquitto import free_port
from vitaltrail.runtime import build_ingest, open_store
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

WARD_FLAGS = ["patients", "readings", "clients", "seconds", "ceiling_calls", "alert_probes"]
WARD_FLAGS.append("alert_rate")  # the command that repeats a run
NURSE = "bench-nurse"
TEAM = "bench-ward"
STEP_MS = 30_000
WELL = {RESPIRATORY_RATE: 16, SPO2: 97, SYSTOLIC_BP: 122, DIASTOLIC_BP: 78, HEART_RATE: 72}
PROFILES: list[dict[Vital, float]] = [
    {},  # well: 6 of every 10
    {},
    {},
    {},
    {},
    {},
    {HEART_RATE: 96},  # low (1)
    {RESPIRATORY_RATE: 7},  # a single 3
    {HEART_RATE: 118, RESPIRATORY_RATE: 22, SPO2: 94},  # urgent (5)
    {HEART_RATE: 135, RESPIRATORY_RATE: 26, SPO2: 90, SYSTOLIC_BP: 88},  # emergency
]
STALE_BP_EVERY = 7  # every seventh patient's cuff stopped 20 minutes ago


def patient_ids(patients: int) -> list[str]:
    return [f"ward-{p:03d}" for p in range(patients)]


def _samples(patient: int, t: int) -> list[Sample]:
    values = WELL | PROFILES[patient % len(PROFILES)]
    samples = [Sample(v.code, v.unit, float(x), t) for v, x in values.items()]
    samples.append(Sample(BODY_TEMPERATURE.code, BODY_TEMPERATURE.unit, 37.1, t))
    if patient % STALE_BP_EVERY == 3:
        cuff = (SYSTOLIC_BP.code, DIASTOLIC_BP.code)
        samples = [s for s in samples if s.code not in cuff or t < time.time() * 1000 - 1_200_000]
    return samples


def write_ward(settings: Settings, patients: int, readings: int) -> dict[str, Any]:
    """Every patient's readings through the ingest pipeline, sealed; the documented values,
    the care team and the clinician."""
    started = time.perf_counter()
    runtime = build_ingest(settings)
    registry = DeviceRegistry(settings.registry_path)
    documented = DocumentedStore(settings.documented_path)
    teams = CareTeamStore(settings.access_db_path)
    now = int(time.time() * 1000)
    try:
        bands = []
        for p, patient in enumerate(patient_ids(patients)):
            signer = DeviceSigner.generate()
            registry.register(f"{patient}-band", patient, signer.key)
            bands.append((p, f"{patient}-band", signer))
        # the cuff of a stale-BP patient measured until 20 minutes ago: older readings
        first = now - max(readings * STEP_MS, 1_500_000)
        for seq in range(readings):
            t = first + (now - first) * seq // max(1, readings - 1)
            batch = [
                InboundMessage(
                    readings_topic(settings.topic_root, device),
                    sign1(signer, encode_reading(Reading(device, seq, tuple(_samples(p, t))))),
                    0,
                    1,
                    0,
                    0,
                )
                for p, device, signer in bands
            ]
            runtime.ingestor.pipeline.process(batch, int(time.time() * 1000))
        runtime.ingestor.pipeline.seal(int(time.time() * 1000))
        for p, patient in enumerate(patient_ids(patients)):
            if p % 2 == 0:
                awake = (
                    Observation(Kind.CONSCIOUSNESS, "A"),
                    Observation(Kind.AIR_OR_OXYGEN, False),
                )
                documented.record(patient, awake, NURSE, "clinician", now - 600_000)
        teams.create(TEAM)
        teams.add_member(TEAM, NURSE)
        for patient in patient_ids(patients):
            teams.add_patient(TEAM, patient)
    finally:
        teams.close()
        documented.close()
        registry.close()
        runtime.close()
    return {
        "patients": patients,
        "readings": patients * readings,
        "written_s": time.perf_counter() - started,
    }


def nurse_headers(settings: Settings) -> dict[str, str]:
    issuer = Issuer.open(
        settings.data_dir, issuer_config(settings), key_path=settings.token_key_path
    )
    try:
        token = issuer.token_for(User(NURSE, "clinician")).access_token
    finally:
        issuer.close()
    return {"Authorization": f"Bearer {token}"}


def _timed(call: Callable[[], object], times: int) -> dict[str, float]:
    call()  # warm
    seconds = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return {
        "p50_ms": 1000 * percentile(seconds, 50),
        "p99_ms": 1000 * percentile(seconds, 99),
        "max_ms": 1000 * max(seconds),
    }


def ceiling(settings: Settings, times: int) -> dict[str, Any]:
    """The summary and an alert round in this process: no HTTP, token, policy or trail."""
    store = open_store(settings, read_only=True)
    documented = DocumentedStore(settings.documented_path)
    alerts = AlertStore(settings.data_dir / "bench-alerts.db")  # not the server's
    max_age = settings.news2_max_age_ms
    config = AlertConfig(news2_max_age_ms=max_age)
    try:
        latest = store.latest()
        marks = documented.latest_records_of()

        def now() -> int:
            return int(time.time() * 1000)

        size = len(summary(latest, marks, now(), max_age))

        def read_and_score() -> bytes:
            return summary(store.latest(), documented.latest_records_of(), now(), max_age)

        def alert_round() -> list[Event]:
            return evaluate_ward(store.latest(), documented, alerts, now(), config)

        first_round = time.perf_counter()
        raised = len(alert_round())
        first_round_s = time.perf_counter() - first_round
        return {
            "answer_bytes": size,
            "summary_only": _timed(lambda: summary(latest, marks, now(), max_age), times),
            "read_and_summary": _timed(read_and_score, times),
            "alert_round": _timed(alert_round, times),
            "first_alert_round": {"ms": 1000 * first_round_s, "events": raised},
        }
    finally:
        alerts.close()
        documented.close()
        store.close()


def _server(
    settings: Settings, headers: dict[str, str], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    port = settings.http_port
    with api_process(settings, trail=True, gc_freeze=True):
        report: dict[str, Any] = {}
        warm = work / "warm.json"
        _run_clients(port, headers, 1, min(3.0, args.seconds), warm)  # untimed
        for clients in args.clients:
            out = work / f"ward-{clients}.json"
            figures = _run_clients(port, headers, clients, args.seconds, out)
            samples = [tuple(s) for s in figures["results"]]
            report[f"clients_{clients}"] = _figures(samples, figures["elapsed_s"])
        return report


def _run_clients(
    port: int, headers: dict[str, str], clients: int, seconds: float, out: Path
) -> dict[str, Any]:
    load = _SPAWN.Process(
        target=clients_worker,
        args=(port, headers, ["/api/v1/ward"], clients, seconds, False, out),
    )
    load.start()
    load.join(seconds + 120)
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def run_bench_ward(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(
            "ward",
            args,
            WARD_FLAGS,
        ),
        "load_average_before": os.getloadavg(),
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", http_port=free_port(), check_workers=0)
        report["data"] = write_ward(settings, args.patients, args.readings)
        print(
            f"ward: {args.patients} patients, {report['data']['readings']:,} signed readings"
            f" through the pipeline in {report['data']['written_s']:.1f} s"
        )
        gc.collect()
        gc.freeze()  # as the server does
        report["ceiling"] = ceiling(settings, args.ceiling_calls)
        gc.unfreeze()
        report["server"] = _server(settings, nurse_headers(settings), args, work)
    if args.alert_probes:
        print(f"alerts: {args.alert_probes} probes beside {args.alert_rate:g} readings/s ...")
        latency = measure_alert_latency(
            probes=args.alert_probes, rate=args.alert_rate, devices=args.patients
        )
        report["reading_to_alert"] = as_dict(latency)
        report["reading_to_alert_summary"] = latency.summary()
    return conclude(report, args, _print)


def _print(report: dict[str, Any]) -> None:
    c = report["ceiling"]
    print(f"ceiling in-process ({c['answer_bytes'] / 1000:.0f} KB answer), p50 / p99 / max ms:")
    for step in ("summary_only", "read_and_summary", "alert_round"):
        f = c[step]
        print(f"  {step:18} {f['p50_ms']:6.2f} / {f['p99_ms']:6.2f} / {f['max_ms']:6.2f}")
    first = c["first_alert_round"]
    print(f"  first alert round  {first['ms']:6.2f} ms ({first['events']} alerts raised)")
    print("server, closed loop, GET /api/v1/ward:")
    for name, r in report["server"].items():
        print(
            f"  {name:10} {r['requests_per_s']:6.1f} req/s  p50 {r['p50_ms']:6.1f} ms"
            f"  p99 {r['p99_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms"
            f"  ({r['requests']:,} answers, {r['errors']} errors, {r['bytes_per_page'] / 1000:.0f} KB)"
        )
    if "reading_to_alert_summary" in report:
        print(f"reading to alert on the page: {report['reading_to_alert_summary']}")
