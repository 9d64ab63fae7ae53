"""A clinician's token restricted to the vital-signs category (SMART v2
``user/Observation.rs?category=...|vital-signs``) reads the care team's vital signs and no
glucose, on every route: refused when glucose is asked for by code (on record), left out of
the latest values, the ward summary and a FHIR search. The same clinician with the role's
full scopes sees the glucose (the control)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from access.users import User
from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Sample
from devices.registry import DeviceRegistry
from devices.vitals import GLUCOSE
from ingest.mqtt_source import InboundMessage
from tests.api_access import Tokens, access_events, assign, bearer
from tests.populated import populate
from tests.stack import now_ms, signed
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.settings import Settings

P0 = "patient-0"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@dataclass
class World:
    client: TestClient
    settings: Settings
    restricted: dict[str, str]
    full: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = populate(tmp_path_factory.mktemp("category") / "data", patients=1, readings=2)
    cgm = DeviceSigner.generate()
    registry = DeviceRegistry(settings.registry_path)
    registry.register("patient-0-cgm", P0, cgm.key)
    registry.close()
    runtime = build_ingest(settings)
    glucose = signed("patient-0-cgm", cgm, 0, [Sample(GLUCOSE.code, GLUCOSE.unit, 131, now_ms())])
    topic = readings_topic(settings.topic_root, "patient-0-cgm")
    runtime.ingestor.pipeline.process([InboundMessage(topic, glucose, 0, 1, 0, 0)], now_ms())
    runtime.ingestor.pipeline.seal(now_ms())
    runtime.close()
    assign(settings, "ward", ["dr-ada"], [P0])
    tokens = Tokens(settings)
    scope = f"user/Observation.rs?category={VITALS} user/Provenance.rs user/Patient.rs"
    restricted = tokens.issuer.token_for(User("dr-ada", "clinician"), scope).access_token
    full = tokens.headers("dr-ada", "clinician")
    tokens.close()
    with TestClient(create_app(data_sources(settings))) as client:
        yield World(client, settings, bearer(restricted), full)


def _codes(world: World, path: str, headers: dict[str, str]) -> set[str]:
    answer = world.client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    return {c for c in ("2339-0", "8867-4") if c in answer.text}


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/patients/{P0}/vitals",
        "/api/v1/ward",
        "/api/v1/patients",
        f"/fhir/Observation?patient={P0}",
        f"/fhir/Observation?patient={P0}&category=vital-signs",
    ],
)
def test_glucose_is_left_out_of_what_a_vital_signs_token_reads(world: World, path: str) -> None:
    assert _codes(world, path, world.restricted) == {"8867-4"}
    if "category" not in path:
        assert _codes(world, path, world.full) == {"2339-0", "8867-4"}


def test_glucose_asked_for_by_code_is_refused_and_on_record(world: World) -> None:
    path = f"/api/v1/patients/{P0}/vitals/{GLUCOSE.code}"
    refused = world.client.get(path, headers=world.restricted)
    assert refused.status_code == 403
    event = access_events(world.settings)[-1].access
    assert (event.outcome, event.patients) == ("deny", (P0,))
    assert "insufficient" in refused.text
    assert world.client.get(path, headers=world.full).status_code == 200
    pulse = f"/api/v1/patients/{P0}/vitals/8867-4"
    assert world.client.get(pulse, headers=world.restricted).status_code == 200
