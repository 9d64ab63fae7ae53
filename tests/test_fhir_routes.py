"""The FHIR routes' access matrix: every caller x every route x two patients, no leak, every
decision in the access trail first; searches without a patient read only whom the caller may;
and /fhir/metadata lists exactly what the routes implement."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from dashboards.app import create_app
from dashboards.route_rules import every_route
from fhirserver.index import ObservationIndex
from ledger.ledger import LedgerReader
from tests.api_access import Tokens, assign, bearer, consent
from tests.fhir_api import access_events, fhir_get, ids
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

P0, P1 = "patient-0", "patient-1"
APP_SCOPES = "system/Observation.rs system/Provenance.rs system/Patient.rs system/Device.rs"


@dataclass
class World:
    app: FastAPI
    client: TestClient
    settings: Settings
    callers: dict[str, dict[str, str]]
    observations: dict[str, str]  # patient -> the id of one of their Observations


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = populate(tmp_path_factory.mktemp("fhir") / "data", patients=3, readings=2)
    assign(settings, "ward-a", ["dr-in"], [P0])
    assign(settings, "ward-b", ["dr-out"], ["patient-7"])
    consent(settings, P0, "app-yes")
    t = Tokens(settings)
    callers = {
        "clinician in care team": t.headers("dr-in", "clinician"),
        "clinician out of care team": t.headers("dr-out", "clinician"),
        "patient self": t.headers("pat-0", "patient", P0),
        "patient other": t.headers("pat-1", "patient", P1),
        "app with consent": bearer(t.app("app-yes", APP_SCOPES, APP_SCOPES)),
        "app without consent": bearer(t.app("app-no", APP_SCOPES, APP_SCOPES)),
        "app with consent, Observation scope only": bearer(
            t.app("app-yes", "system/Observation.rs")
        ),
        "admin": t.headers("root", "admin"),
        "anonymous": {},
    }
    t.close()
    app = create_app(data_sources(settings))
    with TestClient(app) as client:
        observations = {}
        for patient, caller in ((P0, "patient self"), (P1, "patient other")):
            url = f"/fhir/Observation?patient={patient}&code=8867-4&_count=1"
            (observations[patient],) = ids([fhir_get(client, url, callers[caller])])
        yield World(app, client, settings, callers, observations)


EVERY = {"observation", "provenance", "patient", "device", "everything"}
# Who may read what of which patient (the rest is refused).
MAY_READ: dict[str, dict[str, set[str]]] = {
    "clinician in care team": {P0: EVERY},
    "patient self": {P0: EVERY | {"consent", "audit"}},
    "patient other": {P1: EVERY | {"consent", "audit"}},
    "app with consent": {P0: EVERY},
    "app with consent, Observation scope only": {P0: {"observation"}},
}
ROUTES = {
    "/fhir/Observation?patient={p}": "observation",
    "/fhir/Observation?subject=Patient/{p}&code=8867-4&_sort=-date": "observation",
    "/fhir/Observation/$lastn?patient={p}": "observation",
    "/fhir/Observation/{o}": "observation",
    "/fhir/Provenance/p{o}": "provenance",
    "/fhir/Provenance?target=Observation/{o}": "provenance",
    "/fhir/Patient/{p}": "patient",
    "/fhir/Patient/{p}/$everything": "everything",
    "/fhir/Device/{p}-band": "device",
    "/fhir/Consent?patient={p}": "consent",
    "/fhir/AuditEvent?patient={p}": "audit",
}
PATIENT_DATA = {"Observation", "Provenance", "Patient", "Device", "Consent", "AuditEvent"}


def _resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body.get("entry", [])] or [body]


def test_the_matrix_has_no_leak_and_every_decision_is_on_record(world: World) -> None:
    w = world
    leaks: list[str] = []
    for name, headers in w.callers.items():
        for template, kind in ROUTES.items():
            for patient in (P0, P1):
                url = template.format(p=patient, o=w.observations[patient])
                before = len(access_events(w.settings))
                allowed = kind in MAY_READ.get(name, {}).get(patient, set())
                status = 200 if allowed else 401 if name == "anonymous" else 403
                body = fhir_get(w.client, url, headers, status)
                events = access_events(w.settings)[before:]
                where = f"{name} GET {url}"
                if not allowed and any(r["resourceType"] in PATIENT_DATA for r in _resources(body)):
                    leaks.append(f"patient data in a refusal: {where}")
                if allowed:
                    subjects = {
                        r.get("subject", r.get("patient", {})).get("reference")
                        for r in _resources(body)
                        if r["resourceType"] in ("Observation", "Device")
                    }
                    if subjects - {f"Patient/{patient}"}:
                        leaks.append(f"another patient's data: {where} {subjects}")
                if name == "anonymous":
                    if events:
                        leaks.append(f"an anonymous request reached a decision: {where}")
                    continue
                if not events:
                    leaks.append(f"no access event: {where}")
                    continue
                outcomes = {e.access.outcome for e in events}
                if (allowed and "permit" not in outcomes) or (not allowed and outcomes != {"deny"}):
                    leaks.append(f"the trail says {outcomes}: {where}")
                if not all(e.access.route.startswith("GET /fhir/") for e in events):
                    leaks.append(f"the trail names another route: {where}")
                if not all(e.access.patients in ((patient,), ()) for e in events):
                    leaks.append(f"the trail names other patients: {where}")
    assert not leaks, "\n".join(leaks)


def test_everything_holds_only_what_the_caller_may_read(world: World) -> None:
    w = world
    url = f"/fhir/Patient/{P0}/$everything?_count=2"
    mine = fhir_get(w.client, url, w.callers["patient self"])
    kinds = [r["resourceType"] for r in _resources(mine)]
    assert kinds[:3] == ["Patient", "Device", "Consent"]
    assert kinds[3:] == ["Observation", "Provenance"] * 2
    assert any(link["relation"] == "next" for link in mine["link"])
    before = len(access_events(w.settings))
    theirs = fhir_get(w.client, url, w.callers["clinician in care team"])
    assert "Consent" not in {r["resourceType"] for r in _resources(theirs)}  # no Consent scope
    decided = [e.access for e in access_events(w.settings)[before:]]
    # one decision per kind: the Patient, Devices, Observations, Provenances (what a care team
    # or a vital-signs grant shares), and the Consents, which their scopes do not delegate
    assert [(a.outcome, a.data) for a in decided] == [("permit", ("vital-signs",))] * 4 + [
        ("deny", ("consents",))
    ]
    assert decided[-1].reason == "insufficient-scope"
    # walked to the end, page after page, each decided again
    following = next(link["url"] for link in mine["link"] if link["relation"] == "next")
    page = fhir_get(w.client, following, w.callers["patient self"])
    assert {r["resourceType"] for r in _resources(page)} <= {"Observation", "Provenance"}
    # a page's cursor is bound to its patient's $everything
    elsewhere = following.replace(f"/Patient/{P0}/", f"/Patient/{P1}/")
    fhir_get(w.client, elsewhere, w.callers["patient other"], 400)


@pytest.mark.parametrize(
    ("caller", "subjects"),
    [
        ("clinician in care team", {P0}),
        ("clinician out of care team", set()),  # patient-7 has no data
        ("patient self", {P0}),
        ("app with consent", {P0}),
        ("app without consent", set()),
    ],
)
def test_a_search_without_a_patient_reads_only_whom_the_caller_may(
    world: World, caller: str, subjects: set[str]
) -> None:
    w = world
    before = len(access_events(w.settings))
    bundle = fhir_get(w.client, "/fhir/Observation?code=8867-4&_count=1000", w.callers[caller])
    found = {
        r["subject"]["reference"].removeprefix("Patient/")
        for r in _resources(bundle)
        if r["resourceType"] == "Observation"
    }
    assert found == subjects
    (event,) = access_events(w.settings)[before:]
    assert event.access.interaction == "search"
    assert set(event.access.patients) == subjects
    assert event.access.reason == ("none-visible" if not subjects else event.access.reason)


def test_an_administrator_searches_no_one(world: World) -> None:
    outcome = fhir_get(world.client, "/fhir/Observation", world.callers["admin"], 403)
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "admin-reads-no-patient-data"


def test_what_is_not_there_is_a_404_before_any_decision(world: World) -> None:
    w = world
    headers = w.callers["clinician in care team"]
    before = len(access_events(w.settings))
    for url in (
        "/fhir/Observation/e999999-8867-4",
        "/fhir/Observation/not-an-id",
        "/fhir/Provenance/e1-8867-4",
        "/fhir/Device/no-such-band",
        "/fhir/Basic/1",
    ):
        fhir_get(w.client, url, headers, 404)
    assert len(access_events(w.settings)) == before
    fhir_get(w.client, "/fhir/Patient/patient-9", headers, 403)  # not theirs: refused, recorded
    assert len(access_events(w.settings)) == before + 1


INTERACTIONS = {  # (path shape, method) -> FHIR interaction
    ("type", "GET"): "search-type",
    ("type", "POST"): "create",
    ("instance", "GET"): "read",
    ("instance", "DELETE"): "delete",
}


def _implemented(app: FastAPI) -> set[tuple[str, str]]:
    """(resource type, read | search-type | create | delete | $operation) of every FHIR route
    of the app (the subscriptions' websocket is no FHIR interaction)."""
    found = set()
    for route in every_route(app.routes):
        path = getattr(route, "path", "")
        if not isinstance(route, APIRoute) or not path.startswith("/fhir/"):
            continue
        if path == "/fhir/metadata":
            continue
        if path.startswith("/fhir/.well-known/"):
            continue  # SMART discovery at the FHIR base: no FHIR interaction
        parts = path.split("/")[2:]
        if parts[-1].startswith("$"):
            found.add((parts[0], parts[-1]))
            continue
        assert len(parts) in (1, 2), path
        assert len(parts) == 1 or parts[1].startswith("{"), path
        shape = "type" if len(parts) == 1 else "instance"
        found |= {(parts[0], INTERACTIONS[shape, m]) for m in (route.methods or set()) - {"HEAD"}}
    return found


def test_the_capability_statement_lists_exactly_what_the_routes_implement(world: World) -> None:
    w = world
    statement = fhir_get(w.client, "/fhir/metadata", {})
    assert statement["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in statement["format"]
    (rest,) = statement["rest"]
    listed = {(r["type"], i["code"]) for r in rest["resource"] for i in r["interaction"]}
    listed |= {
        (r["type"], "$" + o["name"]) for r in rest["resource"] for o in r.get("operation", [])
    }
    assert listed == _implemented(w.app)
    assert len(listed) == 17  # 10 of the search and reads, 7 of the subscriptions
    (service,) = rest["security"]["service"]
    assert service["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = rest["security"]["extension"]
    token = issuer_config(w.settings).token_endpoint
    assert oauth["extension"] == [{"url": "token", "valueUri": token}]
    # every search parameter listed is one its route takes
    headers = w.callers["patient self"]
    samples = {"patient": P0, "subject": f"Patient/{P0}", "code": "8867-4", "date": "ge2000",
               "category": "vital-signs", "target": f"Observation/{w.observations[P0]}"}  # fmt: skip
    for resource in rest["resource"]:
        for param in resource.get("searchParam", []):
            query = f"{param['name']}={samples[param['name']]}"
            if param["name"] not in ("patient", "subject", "target"):
                query += f"&patient={P0}"
            fhir_get(w.client, f"/fhir/{resource['type']}?{query}", headers)


def test_every_refusal_is_an_operation_outcome_with_its_status(world: World) -> None:
    w = world
    missing = w.client.get(f"/fhir/Observation?patient={P0}")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["issue"][0]["code"] == "login"
    wrong_method = w.client.post(f"/fhir/Observation?patient={P0}")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"
    assert wrong_method.json()["resourceType"] == "OperationOutcome"
    shaped = fhir_get(w.client, "/fhir/Device/bad id", w.callers["patient self"], 422)
    assert shaped["issue"][0]["code"] == "invalid"
    headers = {**w.callers["patient self"], "X-Purpose-Of-Use": "X" * 40}
    fhir_get(w.client, f"/fhir/Patient/{P0}", headers, 422)
    required = fhir_get(w.client, "/fhir/Consent", w.callers["patient self"], 400)
    assert required["issue"][0]["code"] == "required"


def test_the_index_follows_the_ledger_with_no_search_asking(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = populate(
        tmp_path_factory.mktemp("follow") / "data", patients=1, readings=3, fhir_index_follow_s=0.05
    )
    ledger = LedgerReader(settings.ledger_location)
    size = ledger.log.stored_size()
    ledger.close()
    with TestClient(create_app(data_sources(settings))):
        index = ObservationIndex(settings.fhir_index_path)
        deadline = time.monotonic() + 10
        while index.indexed_size() < size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index.indexed_size() == size
        index.close()
