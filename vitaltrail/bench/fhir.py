"""`vitaltrail bench fhir`: a FHIR search of a day of 1 Hz heart rate, page by page.

The data: ``patients`` patients, each a wristband signing its heart rate every second for
``hours`` hours (86,400 readings a day), written straight into a SQLite ledger as ingest
would have logged them (each reading a real COSE_Sign1, the device keys' registrations before
them, the patients' readings interleaved in time, the log sealed) and the devices into the
registry. Then the observation index catches up with the ledger - the time that takes is
reported - as the API's own ``fhirserver.index`` does.

The server: the API in a process of its own, as `vitaltrail serve` runs it (uvicorn, the
embedded issuer's tokens, the read pool), warmed up before anything is timed. The caller: a
SMART backend-services app the patients consented to, its token from the token endpoint's
own code. The load: ``clients`` closed-loop clients in another process, for ``seconds``
each phase:

* ``first``: the first page of ``Observation?patient=&code=http://loinc.org|8867-4
  &date=ge..&date=lt..&_sort=-date&_count=100`` (the whole day), again and again;
* ``next``: walks of that search, following its ``next`` links from the first page to the
  end (864 pages for a day) - the deep pages of a keyset walk.

Each phase with the access trail ``on`` (as deployed: each page's decision committed to the
journal before the answer) and ``off`` (decided, not committed: a bench-only trail, as in
`vitaltrail bench access-trail`). Reported: requests/s and p50/p99 per page.

The ceiling, in the same run and process-free: the same pages made without HTTP, step by
step - the index's SQL alone; with the ledger entries read; with the Observations made from
the signed messages; with the searchset Bundle serialized to JSON - so the ratio to the
server's figure says what HTTP, tokens, the policy and the trail cost.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import http.client
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey

from access.consent import ConsentStatement, Grantee
from access.consent_store import ConsentStore
from access.fhir import instant
from access.issuer import ASSERTION_TYPE, Issuer
from access.journal import Journal
from dashboards.app import create_app
from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRegistry
from devices.vitals import HEART_RATE
from fhirserver.index import IndexReader, ObservationIndex, Slice
from fhirserver.ledger_reads import read_entries, recorded_observations
from fhirserver.paging import Cursor, Page, binding, searchset
from fhirserver.search import parse_query
from ledger.appends import NewEntry
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from vitaltrail.bench.access_trail import UnrecordedTrail
from vitaltrail.bench.fhir_clients import NEXT_LINK, clients_worker, path_of
from vitaltrail.bench.ingest import _SPAWN, command_line, conclude, machine, percentile
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

APP = "bench-telemed"
SCOPES = "system/Observation.rs system/Provenance.rs"
LOINC_HR = f"http://loinc.org|{HEART_RATE.code}"
PAGE = 100
APPEND_BATCH = 10_000


def patient_ids(patients: int) -> list[str]:
    return [f"bench-{p:03d}" for p in range(patients)]


def write_day(settings: Settings, patients: int, hours: float, end_ms: int) -> dict[str, Any]:
    """Each patient's band: a signed heart rate every second for ``hours`` up to ``end_ms``,
    logged (interleaved in time) after the band's key registration; then sealed."""
    started = time.perf_counter()
    ledger = Ledger(
        settings.ledger_location, load_or_create_signer(settings.ledger_key_path, settings.origin)
    )
    registry = DeviceRegistry(settings.registry_path)
    per_patient = int(hours * 3600)
    start_ms = end_ms - per_patient * 1000
    bands: list[tuple[str, DeviceSigner]] = []
    try:
        for patient in patient_ids(patients):
            device = f"{patient}-band"
            signer = DeviceSigner.from_seed(hashlib.sha256(device.encode()).digest())
            registry.register(device, patient, signer.key)
            statement = DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, device, signer.key, patient)
            ledger.append([statement.entry(start_ms - 1000)])
            bands.append((device, signer))
        batch: list[NewEntry] = []
        for second in range(per_patient):
            t = start_ms + second * 1000
            for p, (device, signer) in enumerate(bands):
                value = 60 + (second * 7 + p) % 50
                sample = Sample(HEART_RATE.code, HEART_RATE.unit, value, t)
                body = sign1(signer, encode_reading(Reading(device, second, (sample,))))
                data = LedgerEntry(EntryKind.READING, t + 150, body).encode()
                batch.append(NewEntry(reading_key(device, second), data))
                if len(batch) == APPEND_BATCH:
                    ledger.append(batch)
                    batch = []
        if batch:
            ledger.append(batch)
        ledger.seal(end_ms + 1000)
        size = ledger.log.stored_size()
    finally:
        registry.close()
        ledger.close()
    return {
        "readings": per_patient * patients,
        "entries": size,
        "written_s": time.perf_counter() - started,
        "start_ms": start_ms,
        "end_ms": end_ms,
    }


def catch_up(settings: Settings) -> dict[str, Any]:
    """The observation index brought to the ledger's size from nothing, as the API does."""
    index = ObservationIndex(settings.fhir_index_path)
    reader = LedgerReader(settings.ledger_location)
    try:
        started = time.perf_counter()
        size = index.catch_up(reader)
        seconds = time.perf_counter() - started
    finally:
        reader.close()
        index.close()
    return {"entries": size, "seconds": seconds, "entries_per_s": size / seconds}


def consented_app(settings: Settings, patients: Sequence[str]) -> dict[str, str]:
    """A SMART backend-services app, registered with its key, that each patient consented to
    (recorded by staff on their behalf); its token from the token endpoint's own code
    (``client_credentials``, ``private_key_jwt``), valid for an hour: the request headers."""
    key = ECKey.generate_key("P-384", private=True, parameters={"kid": "bench-1"})
    config = dataclasses.replace(issuer_config(settings), token_ttl_s=3600)
    issuer = Issuer.open(settings.data_dir, config, key_path=settings.token_key_path)
    journal = Journal(settings.access_journal_path)
    try:
        issuer.apps.register(APP, "bench app", {"keys": [key.as_dict(private=False)]}, SCOPES)
        consents = ConsentStore(journal)
        now = int(time.time() * 1000)
        for patient in patients:
            grant = ConsentStatement.grant(
                patient, consents.next_seq(patient), now, Grantee("app", APP),
                data=("vital-signs",), purpose=("TREAT",), start_ms=now - 60_000,
            )  # fmt: skip
            consents.record_for_patient(grant, "bench", "clinician", "bench", now)
        claims = {
            "iss": APP,
            "sub": APP,
            "aud": config.token_endpoint,
            "exp": now // 1000 + 240,
            "jti": secrets.token_hex(8),
        }
        header = {"alg": "ES384", "kid": "bench-1", "typ": "JWT"}
        assertion = jws.serialize_compact(header, json.dumps(claims), key, algorithms=["ES384"])
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": SCOPES,
        }
        token = issuer.client_credentials(form).access_token
    finally:
        journal.close()
        issuer.close()
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def search_path(patient: str, start_ms: int, end_ms: int) -> str:
    return (
        f"/fhir/Observation?patient={patient}&code={LOINC_HR}&date=ge{instant(start_ms)}"
        f"&date=lt{instant(end_ms)}&_sort=-date&_count={PAGE}"
    )


def serve(data_dir: Path, port: int, trail: bool, gc_freeze: bool) -> None:
    """The API as `vitaltrail serve` runs it (this process its own), the trail on or off."""
    settings = Settings(data_dir=data_dir, http_port=port, check_workers=0)
    sources = data_sources(settings)
    if not trail:
        sources.access.trail = UnrecordedTrail(sources.access.journal)
    http_server(create_app(sources), "127.0.0.1", port, gc_freeze=gc_freeze).run()


def _figures(samples: Sequence[tuple[int, int, float, int]], elapsed_s: float) -> dict[str, Any]:
    seconds = [s for _, _, s, _ in samples]
    if not seconds:  # e.g. no walk got that deep in the time
        return {"requests": 0}
    return {
        "requests": len(samples),
        "errors": sum(1 for _, status, _, _ in samples if status != 200),
        "requests_per_s": len(samples) / elapsed_s,
        "p50_ms": 1000 * percentile(seconds, 50),
        "p99_ms": 1000 * percentile(seconds, 99),
        "max_ms": 1000 * max(seconds),
        "bytes_per_page": sum(b for *_, b in samples) / max(1, len(samples)),
    }


def _mode(
    settings: Settings,
    trail: bool,
    gc_freeze: bool,
    headers: dict[str, str],
    paths: list[str],
    args: argparse.Namespace,
    work: Path,
    walk_pages: int,
) -> dict[str, Any]:
    """One server (trail on or off): warmed up, then the first-page and walking phases."""
    port = settings.http_port  # the port the tokens' issuer names
    with api_process(settings, trail, gc_freeze):
        _warm_up(port, headers, paths)
        report: dict[str, Any] = {}
        for clients in args.clients:
            for phase, walk in (("first", False), ("next", True)):
                out = work / f"{trail}-{gc_freeze}-{clients}-{phase}.json"
                load = _SPAWN.Process(
                    target=clients_worker,
                    args=(port, headers, paths, clients, args.seconds, walk, out),
                )
                load.start()
                load.join(args.seconds + 120)
                figures = json.loads(out.read_text())
                samples = [tuple(s) for s in figures["results"]]
                if walk:
                    samples = [s for s in samples if s[0] > 1]  # the next pages only
                found = _figures(samples, figures["elapsed_s"])
                if walk:  # the second half of a walk: its deep pages
                    deep = [s for s in samples if s[0] > walk_pages // 2]
                    found["deepest_page"] = max((s[0] for s in samples), default=0)
                    found["deep_half"] = _figures(deep, figures["elapsed_s"])
                report[f"{phase}_{clients}"] = found
        return report


@contextlib.contextmanager
def api_process(settings: Settings, trail: bool, gc_freeze: bool) -> Iterator[None]:
    """The API in a process of its own on ``settings.http_port``, listening, until the end."""
    port = settings.http_port
    server = _SPAWN.Process(target=serve, args=(settings.data_dir, port, trail, gc_freeze))
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {server.exitcode})")
            time.sleep(0.1)
        yield
    finally:
        server.terminate()
        server.join(30)


def _listening(port: int) -> bool:
    try:
        wait_for_port(port, 0.1)
    except TimeoutError:
        return False
    return True


def _warm_up(port: int, headers: dict[str, str], paths: list[str]) -> None:
    """A few walks' worth of pages, untimed: connections, caches, the read threads."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for path in paths[:3]:
            next_path: str | None = path
            for _ in range(20):
                if next_path is None:
                    break
                conn.request("GET", next_path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"the warm-up was refused: {response.status} {body[:300]!r}")
                found = NEXT_LINK.search(body)
                next_path = path_of(found[1].decode()) if found else None
    finally:
        conn.close()


def ceiling(
    settings: Settings, patient: str, start_ms: int, end_ms: int, pages: int
) -> dict[str, Any]:
    """The same pages made in this process, without HTTP, tokens, policy or trail: each step
    adds one stage to the one before. First pages and deep pages (from a random place of the
    walk, as a next link would)."""
    index = ObservationIndex(settings.fhir_index_path)
    rows_reader = IndexReader(settings.fhir_index_path)
    ledger = LedgerReader(settings.ledger_location)
    try:
        as_of = index.catch_up(ledger)
        query = parse_query(
            [
                ("patient", patient),
                ("code", LOINC_HR),
                ("date", f"ge{instant(start_ms)}"),
                ("date", f"lt{instant(end_ms)}"),
                ("_sort", "-date"),
                ("_count", str(PAGE)),
            ],
            frozenset({"patient", "code", "date", "_sort", "_count"}),
        )
        first = Slice((patient,), (HEART_RATE.code,), start_ms, end_ms, as_of, True, None)
        everything = rows_reader.search(first, 10**9)
        rng_keys = [everything[i].key for i in range(PAGE, len(everything) - PAGE, 997)]
        bound = binding("/Observation", query)
        key = index.cursor_key

        def rows(after_i: int) -> list[Any]:
            after = None if after_i < 0 else rng_keys[after_i % len(rng_keys)]
            return rows_reader.search(dataclasses.replace(first, after=after), PAGE + 1)

        def entries(after_i: int) -> object:
            found = rows(after_i)[:PAGE]
            return read_entries(ledger, (r.entry_index for r in found))

        def observations(after_i: int) -> list[Any]:
            return recorded_observations(ledger, rows(after_i)[:PAGE])

        def bundle(after_i: int) -> bytes:
            found = rows(after_i)
            made = recorded_observations(ledger, found[:PAGE])
            following = Cursor(as_of, found[PAGE - 1].key, bound) if len(found) > PAGE else None
            total = rows_reader.count(first, 10_000)
            page = Page([(o.resource, "match") for o in made], following, total)
            doc = searchset("http://127.0.0.1/fhir", "/Observation", query, page, key)
            return json.dumps(doc, separators=(",", ":")).encode()

        steps: dict[str, Callable[[int], object]] = {
            "index_sql": rows,
            "plus_ledger_read": entries,
            "plus_observations": observations,
            "plus_bundle_json": bundle,
        }
        report: dict[str, Any] = {"walk_pages": -(-len(everything) // PAGE)}
        for name, step in steps.items():
            report[name] = {
                "first": _timed_each(_at_first_page(step), pages),
                "deep": _timed_each(step, pages),
            }
        return report
    finally:
        ledger.close()
        rows_reader.close()
        index.close()


def _at_first_page(step: Callable[[int], object]) -> Callable[[int], object]:
    return lambda _: step(-1)


def _timed_each(call: Callable[[int], object], pages: int) -> dict[str, float]:
    call(0)  # warm
    seconds = []
    for i in range(pages):
        began = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - began)
    return {"p50_ms": 1000 * percentile(seconds, 50), "p99_ms": 1000 * percentile(seconds, 99)}


def run_bench_fhir(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(
            "fhir", args, ["patients", "hours", "clients", "seconds", "ceiling_pages"]
        ),
        "load_average_before": os.getloadavg(),
    }
    print(f"machine: {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", http_port=free_port(), check_workers=0)
        build_ingest(settings).close()  # an empty ledger, registry and store to add to
        end_ms = int(time.time() * 1000) // 1000 * 1000
        day = write_day(settings, args.patients, args.hours, end_ms)
        report["data"] = day
        print(
            f"ledger: {day['readings']:,} signed readings ({args.patients} patients x"
            f" {args.hours:g} h at 1 Hz) written in {day['written_s']:.1f} s"
        )
        report["index_catch_up"] = catch_up(settings)
        print(
            f"index: caught up with {report['index_catch_up']['entries']:,} entries in"
            f" {report['index_catch_up']['seconds']:.1f} s"
        )
        patients = patient_ids(args.patients)
        headers = consented_app(settings, patients)
        start_ms = day["start_ms"]
        paths = [search_path(p, start_ms, end_ms + 1000) for p in patients]
        gc.collect()
        gc.freeze()  # as the server does: the ceiling's tail is not this process's start-up heap
        report["ceiling"] = ceiling(
            settings, patients[0], start_ms, end_ms + 1000, args.ceiling_pages
        )
        gc.unfreeze()
        walk = report["ceiling"]["walk_pages"]
        report["page"] = PAGE
        report["clients"] = args.clients
        report["seconds"] = args.seconds
        for trail in (False, True):
            name = f"trail_{'on' if trail else 'off'}"
            report[name] = _mode(settings, trail, True, headers, paths, args, work, walk)
        if args.compare_gc:
            report["trail_on_no_gc_freeze"] = _mode(
                settings, True, False, headers, paths, args, work, walk
            )
    return conclude(report, args, _print)


def _print(report: dict[str, Any]) -> None:
    c = report["ceiling"]
    print(f"ceiling in-process, {report['page']}-entry pages, p50 / p99 ms (first | deep):")
    for step in ("index_sql", "plus_ledger_read", "plus_observations", "plus_bundle_json"):
        f, d = c[step]["first"], c[step]["deep"]
        print(
            f"  {step:20} {f['p50_ms']:6.2f} / {f['p99_ms']:6.2f}"
            f"  | {d['p50_ms']:6.2f} / {d['p99_ms']:6.2f}"
        )
    modes = [m for m in ("trail_off", "trail_on", "trail_on_no_gc_freeze") if m in report]
    print(f"server, closed loop, {report['seconds']:g} s a phase:")
    for mode in modes:
        for clients in report["clients"]:
            for phase in ("first", "next"):
                r = report[mode][f"{phase}_{clients}"]
                print(
                    f"  {mode:22} {clients} clients, {phase:5} pages:"
                    f" {r['requests_per_s']:6.1f} req/s  p50 {r['p50_ms']:6.1f} ms"
                    f"  p99 {r['p99_ms']:6.1f} ms  ({r['requests']:,} pages, {r['errors']} errors)"
                )
