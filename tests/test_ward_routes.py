"""The ward summary: NEWS2 of every visible patient, sorted by acuity, each vital's age and
staleness, the documented values; only the patients the caller may see, the decision on record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinical.news2 import RESPONSES, Tier
from dashboards.app import create_app
from dashboards.ward_routes import Ward
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Sample
from devices.registry import DeviceRegistry
from devices.vitals import (
    BODY_TEMPERATURE,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    Vital,
)
from ingest.mqtt_source import InboundMessage
from tests.api_access import Tokens, access_events, assign, bearer, consent
from tests.stack import now_ms, signed
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.settings import Settings

MINUTE = 60_000
NORMAL = {RESPIRATORY_RATE: 16.0, SPO2: 97.0, SYSTOLIC_BP: 120.0, HEART_RATE: 70.0}
NORMAL_TEMPERATURE = 37.0
# patient -> vital -> (value, minutes ago); unlisted vitals normal and current.
WARD: dict[str, dict[Vital, tuple[float, int]]] = {
    "patient-a0": {},
    "patient-a1": {},
    "patient-a2": {SYSTOLIC_BP: (85.0, 20)},  # stale: would score 3, must not
    "patient-a3": {SYSTOLIC_BP: (120.0, 40)},  # staler than a2's
    "patient-l1": {HEART_RATE: (95.0, 0)},  # 1
    "patient-l2": {HEART_RATE: (115.0, 0)},  # 2
    "patient-red": {RESPIRATORY_RATE: (7.0, 0)},  # a single 3
    "patient-med": {HEART_RATE: (115.0, 0), RESPIRATORY_RATE: (22.0, 0), SPO2: (94.0, 0)},
    "patient-hi": {
        HEART_RATE: (135.0, 0),
        RESPIRATORY_RATE: (26.0, 0),
        SPO2: (90.0, 0),
        SYSTOLIC_BP: (85.0, 0),
    },
    "patient-conf": {},  # consciousness documented in a test
}
SORTED = [
    "patient-hi",  # high (12)
    "patient-med",  # medium (5)
    "patient-red",  # low-medium (3, red flag)
    "patient-l2",  # low, 2
    "patient-l1",  # low, 1
    "patient-a3",  # routine 0, oldest stale vital
    "patient-a2",  # routine 0, stale vital
    "patient-a0",  # routine 0, nothing stale: by id
    "patient-a1",
    "patient-conf",
]
OUTSIDER = "patient-zz"  # not in the care team


def _ingest(settings: Settings) -> None:
    runtime = build_ingest(settings)
    registry = DeviceRegistry(settings.registry_path)
    now = now_ms()
    for patient in [*WARD, OUTSIDER]:
        signer = DeviceSigner.generate()
        registry.register(f"{patient}-band", patient, signer.key)
        values = {v: (x, 0) for v, x in NORMAL.items()} | {
            BODY_TEMPERATURE: (NORMAL_TEMPERATURE, 0)
        }
        values |= WARD.get(patient, {})
        samples = [Sample(v.code, v.unit, x, now - ago * MINUTE) for v, (x, ago) in values.items()]
        message = signed(f"{patient}-band", signer, 0, samples)
        runtime.ingestor.pipeline.process(
            [_inbound(settings, f"{patient}-band", message)], now_ms()
        )
    registry.close()
    runtime.ingestor.pipeline.seal(now_ms())
    runtime.close()


def _inbound(settings: Settings, device_id: str, payload: bytes) -> InboundMessage:
    return InboundMessage(readings_topic(settings.topic_root, device_id), payload, 0, 1, 0, 0)


@dataclass
class World:
    client: TestClient
    settings: Settings
    callers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("ward") / "data"
    settings = Settings(data_dir=data, check_workers=0)
    _ingest(settings)
    assign(settings, "ward-a", ["dr-in"], list(WARD))
    consent(settings, "patient-l2", "app-yes")
    t = Tokens(settings)
    callers = {
        "clinician": t.headers("dr-in", "clinician"),
        "patient": t.headers("pat-l1", "patient", "patient-l1"),
        "app": bearer(t.app("app-yes")),
        "admin": t.headers("root", "admin"),
        "anonymous": {},
    }
    t.close()
    with TestClient(create_app(data_sources(settings))) as c:
        yield World(c, settings, callers)


def _ward(world: World, caller: str = "clinician") -> dict[str, Any]:
    answer = world.client.get("/api/v1/ward", headers=world.callers[caller])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def _patient(ward: dict[str, Any], patient_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in ward["patients"] if p["patient_id"] == patient_id)
    return found


def test_the_ward_is_sorted_by_tier_then_total_then_staleness_then_id(world: World) -> None:
    ward = _ward(world)
    assert [p["patient_id"] for p in ward["patients"]] == SORTED
    tiers = [(p["news2"]["tier"], p["news2"]["total"]) for p in ward["patients"][:5]]
    assert tiers == [("high", 12), ("medium", 5), ("low-medium", 3), ("low", 2), ("low", 1)]
    assert [p["news2"]["red_flag"] for p in ward["patients"][:3]] == [True, False, True]
    hi = ward["patients"][0]["news2"]
    assert (hi["rank"], hi["partial"], hi["missing"]) == (
        4,
        True,
        ["air_or_oxygen", "consciousness"],
    )


def test_a_stale_blood_pressure_is_reported_stale_and_not_scored(world: World) -> None:
    a2 = _patient(_ward(world), "patient-a2")
    bp = next(v for v in a2["vitals"] if v["code"] == SYSTOLIC_BP.code)
    assert (bp["value"], bp["unit"], bp["stale"], bp["stale_after_s"]) == (
        85.0,
        "mm[Hg]",
        True,
        900,
    )
    assert 20 * 60 <= bp["age_s"] < 21 * 60
    others = [v for v in a2["vitals"] if v["code"] != SYSTOLIC_BP.code]
    assert len(others) == 4  # pulse, respiration, SpO2, temperature
    assert not any(v["stale"] for v in others)
    assert all(0 <= v["age_s"] < 60 for v in others)
    assert a2["oldest_stale_age_s"] == bp["age_s"]
    news = a2["news2"]
    assert (news["total"], news["tier"]) == (0, "routine")  # 85 mmHg would have scored 3
    assert news["stale"] == ["systolic_bp"]
    assert "systolic_bp" not in [s["parameter"] for s in news["sub_scores"]]
    assert {s["parameter"]: s["points"] for s in news["sub_scores"]} == {
        "respiration_rate": 0,
        "spo2": 0,
        "pulse": 0,
        "temperature": 0,
    }
    assert _patient(_ward(world), "patient-a0")["oldest_stale_age_s"] is None


def test_documented_consciousness_changes_the_tier(world: World) -> None:
    before = _patient(_ward(world), "patient-conf")
    assert (before["news2"]["tier"], before["documented"]) == ("routine", [])
    written = world.client.post(
        "/api/v1/patients/patient-conf/documented",
        json={"consciousness": "V", "oxygen": False},
        headers=world.callers["clinician"],
    )
    assert written.status_code == 201, written.text
    ward = _ward(world)
    after = _patient(ward, "patient-conf")
    news = after["news2"]
    assert (news["tier"], news["total"], news["red_flag"]) == ("low-medium", 3, True)
    assert news["missing"] == []
    assert [(d["kind"], d["value"], d["by"]) for d in after["documented"]] == [
        ("consciousness", "V", "dr-in"),
        ("air_or_oxygen", False, "dr-in"),
    ]
    order = [p["patient_id"] for p in ward["patients"]]
    assert order.index("patient-conf") == order.index("patient-red") - 1  # ties on 3: by id


@pytest.mark.parametrize(
    ("caller", "shown"),
    [
        ("clinician", set(WARD)),  # the care team's, not the outsider
        ("patient", {"patient-l1"}),
        ("app", {"patient-l2"}),  # only the patient who consented
    ],
)
def test_each_caller_sees_only_whom_they_may_and_the_listing_is_on_record(
    world: World, caller: str, shown: set[str]
) -> None:
    before = len(access_events(world.settings))
    ward = _ward(world, caller)
    assert {p["patient_id"] for p in ward["patients"]} == shown
    assert OUTSIDER not in str(ward)
    rows = access_events(world.settings)
    assert len(rows) == before + 1
    event = rows[-1].access
    assert (event.outcome, event.interaction, set(event.patients)) == ("permit", "search", shown)
    assert event.route == "GET /api/v1/ward"


def test_admin_and_anonymous_are_refused(world: World) -> None:
    before = len(access_events(world.settings))
    admin = world.client.get("/api/v1/ward", headers=world.callers["admin"])
    assert admin.status_code == 403
    assert "patient-a" not in admin.text
    event = access_events(world.settings)[-1].access
    assert (len(access_events(world.settings)), event.outcome) == (before + 1, "deny")
    anonymous = world.client.get("/api/v1/ward")
    assert anonymous.status_code == 401
    assert len(access_events(world.settings)) == before + 1  # no identity: refused before deciding


def test_the_answer_is_what_its_model_says_and_each_tier_response_comes_once(world: World) -> None:
    answer = world.client.get("/api/v1/ward", headers=world.callers["clinician"])
    ward = Ward.model_validate_json(answer.content)  # the OpenAPI description holds
    assert list(ward.tiers) == list(Tier)
    assert ward.tiers[Tier.HIGH].response == RESPONSES[Tier.HIGH].response
    assert RESPONSES[Tier.HIGH].response not in json.dumps(answer.json()["patients"])
    assert answer.headers["content-type"] == "application/json"
    schema = world.client.get("/openapi.json").json()
    ok = schema["paths"]["/api/v1/ward"]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Ward"}
