"""The patient page's own routes: the ledger keys a browser pins, NEWS2 over time through the
path-patient gate (on record before data, refused with a reason), and the page itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboards.app import create_app
from ledger.cosignature import Cosigner
from ledger.note import format_vkey
from tests.api_access import access_events, assign, writer_and_readers
from tests.auth_app import add_users, auth_app, client, sign_in
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings, WitnessSetting

P0 = "patient-0"
HISTORY = f"/api/v1/patients/{P0}/news2/history"


@dataclass
class World:
    client: TestClient
    settings: Settings
    callers: dict[str, dict[str, str]]
    witness_key: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    witness = Cosigner.generate("witness.example/w1")
    key = format_vkey(witness.name, witness.public_key, witness.ALG)
    settings = populate(
        tmp_path_factory.mktemp("patient-page") / "data",
        patients=1,
        readings=3,
        witnesses=[WitnessSetting(url="http://127.0.0.1:9", key=key)],
        witness_quorum=0,
    )
    callers = writer_and_readers(settings, P0)
    with TestClient(create_app(data_sources(settings))) as c:
        yield World(c, settings, callers, key)


def test_the_ledger_keys_are_what_vitaltrail_verify_is_given(world: World) -> None:
    answer = world.client.get("/api/v1/ledger/keys")  # public: no token
    assert answer.status_code == 200
    pub = world.settings.ledger_key_path.with_suffix(".pub").read_text().strip()
    assert answer.json() == {"ledger_key": pub, "witness_keys": [world.witness_key], "quorum": 0}


def test_without_a_ledger_key_the_keys_are_404(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = populate(tmp_path_factory.mktemp("no-key") / "data", patients=1, readings=1)
    sources = data_sources(settings)
    sources.ledger_key_file = settings.data_dir / "nowhere.pub"
    with TestClient(create_app(sources)) as c:
        answer = c.get("/api/v1/ledger/keys")
    assert answer.status_code == 404
    assert "no signing key" in answer.json()["detail"]


def test_news2_history_is_scored_for_whoever_reads_the_vitals_and_on_record(world: World) -> None:
    for name, headers in world.callers.items():
        before = len(access_events(world.settings))
        answer = world.client.get(HISTORY, params={"window": "1h"}, headers=headers)
        event = access_events(world.settings)[before:]
        assert len(event) == 1, name
        if name in ("clinician out of care team", "admin"):
            assert answer.status_code == 403, name
            assert event[0].access.outcome == "deny"
            continue
        assert answer.status_code == 200, (name, answer.text)
        body = answer.json()
        assert (body["window"], body["bucket_ms"]) == ("1h", 60_000)
        assert body["end_ms"] - body["start_ms"] == 3_600_000
        last = body["points"][-1]
        # the band measures heart rate 70-72, SpO2 97 and 36.9 °C: no points, but partial
        assert (last["total"], last["partial"]) == (0, True)
        assert last["unscored"] == [
            "respiration_rate",
            "air_or_oxygen",
            "systolic_bp",
            "consciousness",
        ]
        assert event[0].access.route == "GET /api/v1/patients/{patient_id}/news2/history"


def test_documenting_changes_the_history_from_then_on(world: World) -> None:
    clinician = world.callers["clinician in care team"]
    posted = world.client.post(
        f"/api/v1/patients/{P0}/documented",
        json={"consciousness": "V", "oxygen": True},
        headers=clinician,
    )
    assert posted.status_code == 201
    points = world.client.get(HISTORY, params={"window": "1h"}, headers=clinician).json()["points"]
    assert points[-1]["total"] == 5
    assert points[-1]["red_flag"]
    assert points[-1]["unscored"] == ["respiration_rate", "systolic_bp"]


def test_a_window_not_offered_is_a_422(world: World) -> None:
    headers = world.callers["clinician in care team"]
    answer = world.client.get(HISTORY, params={"window": "2h"}, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "window"]


def test_the_page_is_public_and_holds_no_data_but_its_id_is_checked(world: World) -> None:
    page = world.client.get(f"/ward/patients/{P0}")
    assert page.status_code == 200
    assert P0 not in page.text
    assert 'type="module"' in page.text
    assert world.client.get("/ward/patients/..%2Fetc").status_code in (404, 422)
    assert world.client.get("/ward/patients/-bad").status_code == 422


def test_a_signed_in_clinician_reads_everything_the_page_reads(tmp_path: Path) -> None:
    """The page calls with the session cookie: each of its reads answers it, FHIR too."""
    settings = populate(tmp_path / "data", patients=1, readings=2)
    assign(settings, "ward", ["nurse.ada"], [P0])
    add_users(tmp_path / "auth", ("nurse.ada", "clinician", None))
    with client(auth_app(settings, tmp_path / "auth")) as c:
        sign_in(c, "nurse.ada")
        for path in (
            f"/api/v1/patients/{P0}/vitals",
            f"/api/v1/patients/{P0}/vitals/8867-4?bucket_s=60",
            f"/api/v1/patients/{P0}/news2",
            f"{HISTORY}?window=7d",
            f"/api/v1/patients/{P0}/documented",
            f"/api/v1/patients/{P0}/alerts",
            "/api/v1/readings/2/proof",
            "/api/v1/ledger/keys",
        ):
            assert c.get(path).status_code == 200, path
        observations = c.get(f"/fhir/Observation?patient={P0}&_sort=-date&_count=50")
        assert observations.status_code == 200
        assert len(observations.json()["entry"]) == 6  # two readings of three vitals
