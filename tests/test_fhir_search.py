"""FHIR search over HTTP: pages that hold still while readings arrive, dates, codes, sorting,
$lastn, and the queries a server refuses - each answer valid FHIR."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from access.fhir import instant
from dashboards.app import create_app
from devices.keys import DeviceSigner
from ledger.keyfile import load_or_create_signer
from tests.api_access import ward_headers
from tests.fhir_api import fhir_get, ids, next_url, walk
from tests.fhir_ledger import T0, LedgerWriter, blood_pressure, vitals
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

P0, P1 = "patient-0", "patient-1"
READINGS = 150  # heart rate and SpO2, one a second from T0
BP_EVERY = 10  # a blood pressure every 10 s


@dataclass
class World:
    client: TestClient
    settings: Settings
    headers: dict[str, str]
    writer: LedgerWriter
    watch: DeviceSigner
    hr: dict[str, int] = field(default_factory=dict)  # HR Observation id -> its time
    bp: dict[str, int] = field(default_factory=dict)

    def add_heart_rate(self, time_ms: int) -> str:
        index = self.writer.reading("patient-0-watch", self.watch, vitals(time_ms))
        self.hr[f"e{index}-8867-4"] = time_ms
        return f"e{index}-8867-4"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = populate(tmp_path_factory.mktemp("search") / "data", patients=2, readings=2)
    signer = load_or_create_signer(settings.ledger_key_path, settings.origin)
    writer = LedgerWriter(settings.ledger_location, signer)
    watch, cuff = DeviceSigner.generate(), DeviceSigner.generate()
    writer.register("patient-0-watch", P0, watch)
    writer.register("patient-0-cuff", P0, cuff)
    headers = ward_headers(settings, [P0, P1])
    with TestClient(create_app(data_sources(settings))) as client:
        w = World(client, settings, headers, writer, watch)
        for i in range(READINGS):
            w.add_heart_rate(T0 + i * 1000)
            if i % BP_EVERY == 0:
                index = writer.reading("patient-0-cuff", cuff, blood_pressure(T0 + i * 1000 + 500))
                w.bp[f"e{index}-85354-9"] = T0 + i * 1000 + 500
        writer.seal()
        yield w
    writer.close()


def _url(**params: str) -> str:
    return "/fhir/Observation?" + urlencode(params)


def _search(w: World, **params: str) -> list[str]:
    return ids(walk(w.client, _url(**params), w.headers))


def _iso(ms: int) -> str:
    return instant(ms)


def test_paging_to_the_end_while_readings_arrive_has_no_duplicate_no_gap(world: World) -> None:
    w = world
    before = {i for i, t in w.hr.items() if t < T0 + 10_000_000}
    arrived: list[str] = []

    def append(page: int) -> None:
        # readings arrive between pages, some timed inside the range the walk is reading
        arrived.append(w.add_heart_rate(T0 + page * 7_000 + 123))
        arrived.append(w.add_heart_rate(T0 + 10_000_000 + page))

    url = _url(patient=P0, code="http://loinc.org|8867-4", date=f"lt{_iso(T0 + 10_000_000)}")
    pages = walk(w.client, url + "&_count=17", w.headers, between=append)
    found = ids(pages)
    assert len(found) == len(set(found))  # no duplicate
    assert set(found) == before  # no gap, and nothing that arrived during the walk
    assert len(pages) == -(-len(before) // 17)
    assert {p["total"] for p in pages} == {len(before)}
    times = [e["resource"]["effectiveDateTime"] for p in pages for e in p["entry"]]
    assert times == sorted(times)
    # The arrivals are there for the next search, and the ids name the same Observations.
    again = _search(w, patient=P0, code="8867-4", date=f"lt{_iso(T0 + 10_000_000)}", _count="500")
    assert set(again) == before | {a for a in arrived if w.hr[a] < T0 + 10_000_000}
    first = pages[0]["entry"][0]["resource"]
    assert fhir_get(w.client, f"/fhir/Observation/{first['id']}", w.headers) == first


def test_newest_first_walks_backwards_to_the_end(world: World) -> None:
    w = world
    url = _url(patient=P0, code="85354-9", _sort="-date", _count="4")
    pages = walk(w.client, url, w.headers)
    found = ids(pages)
    assert found == sorted(w.bp, key=lambda i: w.bp[i], reverse=True)
    bp = pages[0]["entry"][0]["resource"]
    assert "valueQuantity" not in bp
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == ["8480-6", "8462-4"]


def test_date_bounds_at_their_precision(world: World) -> None:
    w = world
    t = T0 + 20_000  # HR at exactly t; BP at t + 500

    def found(*dates: str) -> set[str]:
        query = [("patient", P0), ("code", "8867-4,85354-9"), ("_count", "1000")]
        query += [("date", d) for d in dates]
        return set(ids(walk(w.client, "/fhir/Observation?" + urlencode(query), w.headers)))

    at_t = {i for i, when in {**w.hr, **w.bp}.items() if when == t}
    assert found(_iso(t)) == at_t  # eq at ms precision
    second = _iso(t)[:19] + "Z"  # the whole second: HR at t and BP at t + 500
    assert found(second) == {i for i, when in {**w.hr, **w.bp}.items() if t <= when < t + 1000}
    assert found(f"ge{_iso(t)}", f"lt{_iso(t + 1000)}") == found(second)
    assert found(f"gt{second}", f"le{_iso(t + 1000)}") == {
        i for i, when in {**w.hr, **w.bp}.items() if when == t + 1000
    }
    day = datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%d")
    whole_day = found(day)
    assert {i for i, when in w.hr.items() if when < T0 + 86_400_000 - T0 % 86_400_000} <= whole_day
    assert found(f"lt{day}") == set()
    offset = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    hours = int(offset[11:13])
    shifted = f"{offset[:11]}{(hours + 2) % 24:02d}{offset[13:]}+02:00"  # the same instant
    if hours < 22:
        assert found(shifted) == found(second)


def test_codes_are_ored_and_spo2_is_found_by_either_code(world: World) -> None:
    w = world
    both = _search(w, patient=P0, code="http://loinc.org|8867-4,http://loinc.org|85354-9",
                   date=f"lt{_iso(T0 + 60_000)}", _count="1000")  # fmt: skip
    kinds = {i.split("-", 1)[1] for i in both}
    assert kinds == {"8867-4", "85354-9"}
    by_arterial = _search(w, patient=P0, code="2708-6", date=f"lt{_iso(T0 + 5000)}")
    by_oximetry = _search(
        w, patient=P0, code="http://loinc.org|59408-5", date=f"lt{_iso(T0 + 5000)}"
    )
    assert by_arterial == by_oximetry
    assert len(by_arterial) == 5
    assert _search(w, patient=P0, code="8480-6") == []  # a component's code is not the panel's


def test_last_n_is_the_newest_of_each_code(world: World) -> None:
    w = world
    bundle = fhir_get(w.client, f"/fhir/Observation/$lastn?patient={P0}&max=2", w.headers)
    found = [e["resource"] for e in bundle["entry"]]
    by_code: dict[str, list[str]] = {}
    for o in found:
        by_code.setdefault(o["code"]["coding"][0]["code"], []).append(o["effectiveDateTime"])
    assert set(by_code) == {"8867-4", "2708-6", "85354-9", "8310-5"}  # SpO2's first coding
    assert all(len(times) == 2 and times[0] > times[1] for times in by_code.values())
    newest_bp = max(w.bp.values())
    assert by_code["85354-9"][0] == _iso(newest_bp)
    only_bp = fhir_get(w.client, f"/fhir/Observation/$lastn?subject=Patient/{P0}&code=85354-9",
                       w.headers)  # fmt: skip
    assert [e["resource"]["id"] for e in only_bp["entry"]] == [max(w.bp, key=w.bp.__getitem__)]
    fhir_get(w.client, "/fhir/Observation/$lastn?code=85354-9", w.headers, 400)  # no patient


def test_a_search_without_a_patient_reads_only_the_care_teams(world: World) -> None:
    w = world
    bundle = fhir_get(w.client, "/fhir/Observation?code=8310-5&_count=1000", w.headers)
    subjects = {e["resource"]["subject"]["reference"] for e in bundle["entry"]}
    assert subjects == {f"Patient/{P0}", f"Patient/{P1}"}  # patient-2 is no one's here
    assert fhir_get(w.client, "/fhir/Observation?subject=Group/ward-3", w.headers)["total"] == 0


def _cursor_of(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["_cursor"]


@pytest.mark.parametrize(
    ("query", "status", "issue"),
    [
        ("patient=patient-0&_include=Observation:patient", 400, "not-supported"),
        ("patient=patient-0&date=2025-13-01", 400, "invalid"),
        ("patient=patient-0&date=ap2025", 400, "not-supported"),
        ("patient=patient-0&_count=0", 400, "invalid"),
        ("patient=patient-0&_count=1001", 400, "invalid"),
        ("patient=patient-0&_sort=code", 400, "not-supported"),
        ("patient=patient 0", 400, "value"),
        ("patient=patient-0&_cursor=AAAA", 400, "invalid"),
        ("patient=patient-0&_format=xml", 406, "not-supported"),
        ("patient=patient-0&_format=application/fhir+xml", 406, "not-supported"),
    ],
)
def test_a_query_the_server_will_not_run_is_an_operation_outcome(
    world: World, query: str, status: int, issue: str
) -> None:
    outcome = fhir_get(world.client, f"/fhir/Observation?{query}", world.headers, status)
    assert outcome["issue"][0]["code"] == issue


def test_lenient_handling_leaves_out_what_it_cannot_use(world: World) -> None:
    w = world
    headers = {**w.headers, "Prefer": "handling=lenient"}
    bundle = fhir_get(w.client, f"/fhir/Observation?patient={P0}&_include=x&_count=3", headers)
    assert len(bundle["entry"]) == 3
    assert bundle["link"][0]["url"].endswith(f"/fhir/Observation?patient={P0}&_count=3")


def test_accept_is_negotiated_the_fhir_way(world: World) -> None:
    w = world
    for accept in (
        "application/fhir+json",
        "application/json",
        "*/*",
        "application/fhir+json; fhirVersion=4.0",
    ):
        fhir_get(w.client, "/fhir/metadata", {"Accept": accept})
    fhir_get(w.client, "/fhir/metadata", {"Accept": "application/fhir+xml"}, 406)
    fhir_get(w.client, f"/fhir/Observation?patient={P0}", {**w.headers, "Accept": "text/xml"}, 406)


def test_a_cursor_works_for_its_own_search_only(world: World) -> None:
    w = world
    first = fhir_get(w.client, _url(patient=P0, code="8867-4", _count="2"), w.headers)
    cursor = _cursor_of(next_url(first) or "")
    elsewhere = _url(patient=P1, code="8867-4", _count="2", _cursor=cursor)
    outcome = fhir_get(w.client, elsewhere, w.headers, 400)
    assert "another search" in outcome["issue"][0]["diagnostics"]
    other_code = _url(patient=P0, code="59408-5", _count="2", _cursor=cursor)
    fhir_get(w.client, other_code, w.headers, 400)
    changed = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    fhir_get(w.client, _url(patient=P0, code="8867-4", _count="2", _cursor=changed), w.headers, 400)
    # the page size may change between pages
    fhir_get(w.client, _url(patient=P0, code="8867-4", _count="5", _cursor=cursor), w.headers)
