"""The authorization matrix: every patient-data route x every kind of caller, 0 leaks, and
every decision (permit or refusal) on record in the access trail before the answer."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from dashboards.app import create_app
from dashboards.bundles import recorded_reading
from devices.registry import DeviceRegistry
from ledger.ledger import LedgerReader
from tests.api_access import Tokens, access_events, assign, bearer, consent, withdraw
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

P0, P1 = "patient-0", "patient-1"


@dataclass
class World:
    client: TestClient
    settings: Settings
    callers: dict[str, dict[str, str]]  # name -> request headers
    readings: dict[str, int]  # patient -> the index of one of their readings


def _reading_of(settings: Settings) -> dict[str, int]:
    ledger = LedgerReader(settings.ledger_location)
    registry = DeviceRegistry(settings.registry_path)
    found: dict[str, int] = {}
    for index, _ in ledger.log.entries(0, ledger.log.stored_size()):
        try:
            device = registry.get(recorded_reading(ledger, index).reading.device_id)
        except LookupError:
            continue
        if device is not None:
            found.setdefault(device.patient_id, index)
    ledger.close()
    registry.close()
    return found


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "dr-in"  # someone else's token, made to speak for the care team's clinician
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _unsigned(claims: dict[str, object]) -> str:
    def b64(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = populate(tmp_path_factory.mktemp("matrix") / "data", patients=2, readings=2)
    assign(settings, "ward-a", ["dr-in"], [P0])
    assign(settings, "ward-b", ["dr-out"], ["patient-7"])
    consent(settings, P0, "app-yes")
    t = Tokens(settings)
    now = int(time.time())
    callers = {
        "clinician in care team": t.headers("dr-in", "clinician"),
        "clinician out of care team": t.headers("dr-out", "clinician"),
        "patient self": t.headers("pat-0", "patient", P0),
        "patient other": t.headers("pat-1", "patient", P1),
        "app with consent": bearer(t.app("app-yes")),
        "app without consent": bearer(t.app("app-no")),
        "admin": t.headers("root", "admin"),
        "anonymous": {},
        "expired": bearer(t.sign(t.claims(sub="dr-in", exp=now - 120, iat=now - 420, nbf=None))),
        "tampered": bearer(_tampered(t.user("dr-out", "clinician"))),
        "alg none": bearer(_unsigned(t.claims(sub="dr-in"))),
        "wrong audience": bearer(t.sign(t.claims(sub="dr-in", aud="another-api"))),
        "wrong issuer": bearer(t.sign(t.claims(sub="dr-in", iss="https://evil.example"))),
        "not a bearer token": {"Authorization": "Basic ZHItaW46cGFzc3dvcmQ="},
    }
    t.close()
    with TestClient(create_app(data_sources(settings))) as client:
        yield World(client, settings, callers, _reading_of(settings))


# Who may read which patient's data (vitals, readings, proofs).
MAY_READ = {
    "clinician in care team": {P0},
    "patient self": {P0},
    "patient other": {P1},
    "app with consent": {P0},
}
# Who may read a patient's access log: the patient only.
MAY_READ_LOG = {"patient self": {P0}, "patient other": {P1}}
AUTHENTICATED = {
    "clinician in care team",
    "clinician out of care team",
    "patient self",
    "patient other",
    "app with consent",
    "app without consent",
    "admin",
}
ROUTES = [
    "/api/v1/patients/{p}/vitals",
    "/api/v1/patients/{p}/vitals/8867-4",
    "/api/v1/patients/{p}/documented",
    "/api/v1/patients/{p}/news2",
    "/api/v1/patients/{p}/alerts",
    "/api/v1/readings/{r}",
    "/api/v1/readings/{r}/proof",
    "/api/v1/patients/{p}/access-log",
    "/api/v1/patients/{p}/access-log/fhir",
]


def test_the_matrix_has_no_leak_and_every_decision_is_on_record(world: World) -> None:
    leaks: list[str] = []
    checked = 0
    for name, headers in world.callers.items():
        for template in ROUTES:
            for patient in (P0, P1):
                path = template.format(p=patient, r=world.readings[patient])
                before = len(access_events(world.settings))
                response = world.client.get(path, headers=headers)
                rows = access_events(world.settings)
                checked += 1
                allowed = (MAY_READ_LOG if "access-log" in template else MAY_READ).get(name, set())
                where = f"{name} GET {path}: {response.status_code}"
                if patient in allowed:
                    if response.status_code != 200:
                        leaks.append(f"refused what is allowed: {where}")
                elif response.status_code < 400:
                    leaks.append(f"LEAK {where}")
                elif patient in response.text:
                    leaks.append(f"LEAK in an error {where}")
                if name in AUTHENTICATED:
                    assert len(rows) == before + 1, where  # exactly one decision recorded
                    event = rows[-1].access
                    assert event.outcome == ("permit" if patient in allowed else "deny"), where
                    assert event.patients == (patient,), where
                else:
                    assert response.status_code == 401, where
                    assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
                    assert len(rows) == before, where  # no identity: refused before deciding
    assert not leaks, leaks
    assert checked == len(world.callers) * len(ROUTES) * 2


@pytest.mark.parametrize("listing", ["/api/v1/patients", "/api/v1/ward"])
def test_the_ward_listing_shows_each_caller_only_whom_they_may_see(
    world: World, listing: str
) -> None:
    for name, headers in world.callers.items():
        before = len(access_events(world.settings))
        response = world.client.get(listing, headers=headers)
        if name not in AUTHENTICATED:
            assert response.status_code == 401, name
            continue
        if name == "admin":
            assert response.status_code == 403, name
        else:
            assert response.status_code == 200, name
            body = response.json()
            shown = {p["patient_id"] for p in (body["patients"] if "ward" in listing else body)}
            assert shown == MAY_READ.get(name, set()), name
        rows = access_events(world.settings)
        assert len(rows) == before + 1, name
        assert set(rows[-1].access.patients) == MAY_READ.get(name, set()), name


def test_my_access_log_is_the_patients_own(world: World) -> None:
    for name, headers in world.callers.items():
        response = world.client.get("/api/v1/me/access-log", headers=headers)
        if name in MAY_READ_LOG:
            assert response.status_code == 200, name
            assert response.json(), name  # at least this very read
        elif name in AUTHENTICATED:
            assert response.status_code == 403, name
        else:
            assert response.status_code == 401, name


def test_break_glass_works_at_once_is_flagged_and_shown_to_the_patient(world: World) -> None:
    c, callers = world.client, world.callers
    out = callers["clinician out of care team"]
    assert c.get(f"/api/v1/patients/{P1}/vitals", headers=out).status_code == 403
    glass = {**out, "X-Break-Glass-Reason": "found collapsed in the corridor"}
    response = c.get(f"/api/v1/patients/{P1}/vitals", headers=glass)
    assert response.status_code == 200
    assert response.json()["patient_id"] == P1
    log = c.get("/api/v1/me/access-log", headers=callers["patient other"]).json()
    broken = [e for e in log if e["break_glass"] is not None]
    assert broken[-1]["who"] == "dr-out"
    assert broken[-1]["break_glass"] == "found collapsed in the corridor"
    assert broken[-1]["reason"] == "break-glass"
    assert any(e["outcome"] == "deny" and e["who"] == "dr-out" for e in log)  # refusals too
    fhir = c.get(f"/api/v1/patients/{P1}/access-log/fhir", headers=callers["patient other"])
    events = [e["resource"] for e in fhir.json()["entry"]]
    assert any(p["coding"][0]["code"] == "BTG" for e in events for p in e.get("purposeOfEvent", []))
    # a patient or an app cannot break the glass
    for name in ("patient self", "app without consent"):
        headers = {**callers[name], "X-Break-Glass-Reason": "please"}
        assert c.get(f"/api/v1/patients/{P1}/vitals", headers=headers).status_code == 403


def test_an_app_sees_the_patient_only_while_the_consent_is_in_force(world: World) -> None:
    c, app = world.client, world.callers["app with consent"]
    seq = consent(world.settings, P1, "app-yes")
    assert c.get(f"/api/v1/patients/{P1}/vitals", headers=app).status_code == 200
    withdraw(world.settings, P1, seq)
    assert c.get(f"/api/v1/patients/{P1}/vitals", headers=app).status_code == 403  # next request
    event = access_events(world.settings)[-1].access
    assert (event.outcome, event.reason) == ("deny", "no-consent")


def test_if_the_trail_cannot_record_nothing_is_served(world: World) -> None:
    c, clinician = world.client, world.callers["clinician in care team"]
    assert c.get(f"/api/v1/patients/{P0}/vitals", headers=clinician).status_code == 200
    before = len(access_events(world.settings))
    lock = sqlite3.connect(world.settings.access_journal_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the journal cannot commit (5 s busy timeout, then fail)
    try:
        response = c.get(f"/api/v1/patients/{P0}/vitals", headers=clinician)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert response.status_code == 503
    assert "vitals" not in response.text
    assert "8867-4" not in response.text
    assert len(access_events(world.settings)) == before  # and nothing claims it was recorded
    metrics = c.get("/metrics", headers=world.callers["admin"]).text
    assert "vitaltrail_api_trail_unavailable_total 1.0" in metrics
