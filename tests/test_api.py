"""The web API over a populated data directory: shapes, errors, hostile input, OpenAPI."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.registry import DeviceRegistry
from ingest.mqtt_source import InboundMessage
from ledger.blocks import Block
from ledger.checkpoint import Checkpoint
from ledger.merkle import verify_consistency
from ledger.note import NoteVerifier, open_note
from ledger.verifier import verify_bundle
from tests.api_access import Tokens, bearer, ward_headers
from tests.populated import populate
from tests.stack import now_ms, signed
from vitaltrail.runtime import build_ingest, data_sources

WARD = ("patient-0", "patient-1", "patient-2", "patient-9")  # patient-9: no device, no data


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A clinician's client, with the three patients in their care team."""
    settings = populate(tmp_path / "data", patients=3, readings=5)
    headers = ward_headers(settings, WARD)
    with TestClient(create_app(data_sources(settings)), headers=headers) as c:
        yield c, settings.ledger_key_path.with_suffix(".pub")


def test_patients_with_latest_vitals(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    patients = c.get("/api/v1/patients").json()
    assert [p["patient_id"] for p in patients] == ["patient-0", "patient-1", "patient-2"]
    vitals = {v["name"]: v for v in patients[0]["vitals"]}
    assert vitals["heart_rate"]["value"] == 74  # the last of 70..74
    assert vitals["body_temperature"]["unit"] == "Cel"


def test_latest_and_series_for_one_patient(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    latest = c.get("/api/v1/patients/patient-1/vitals").json()
    assert len(latest["vitals"]) == 3
    series = c.get("/api/v1/patients/patient-1/vitals/8867-4", params={"bucket_s": 3600}).json()
    assert sum(p["count"] for p in series["points"]) == 5
    assert c.get("/api/v1/patients/patient-9/vitals").status_code == 404  # theirs, no data
    assert c.get("/api/v1/patients/nobody/vitals").status_code == 403  # not in the care team


def test_a_reading_by_id_and_its_proof_bundle_verify(client: tuple[TestClient, Path]) -> None:
    c, key_path = client
    assert c.get("/api/v1/readings/0").status_code == 404  # entry 0 registers a device key
    reading = c.get("/api/v1/readings/3").json()
    assert reading["sealed"] is True
    assert reading["patient_id"].startswith("patient-")
    bundle = c.get(reading["proof_url"])
    assert bundle.headers["content-type"] == "application/json"
    report = verify_bundle(bundle.text, NoteVerifier.parse(key_path.read_text()))
    assert report.ok, report.failed()
    checkpoint = c.get("/api/v1/checkpoint")
    assert checkpoint.text.startswith("vitaltrail.local/ledger\n18\n")
    assert c.get("/api/v1/ledger").json() == {
        "origin": "vitaltrail.local/ledger",
        "tree_size": 18,  # three key registrations, fifteen readings
        "sealed_size": 18,
        "blocks": 1,
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/readings/999", 404),
        ("/api/v1/readings/-1", 422),
        ("/api/v1/readings/99999999999999999999999", 422),
        ("/api/v1/readings/abc", 422),
        ("/api/v1/readings/999/proof", 404),
        ("/api/v1/patients/..%2F..%2Fetc/vitals", 404),
        ("/api/v1/patients/%00/vitals", 422),
        ("/api/v1/patients/" + "x" * 200 + "/vitals", 422),
        ("/api/v1/patients/patient-1/vitals/heart", 422),
        ("/api/v1/patients/patient-1/vitals/8867-4?bucket_s=0", 422),
        ("/api/v1/patients/patient-1/vitals/8867-4?bucket_s=0.001&start_ms=0", 422),
        ("/api/v1/patients/patient-1/vitals/8867-4?start_ms=10&end_ms=5", 422),
    ],
)
def test_bad_requests_get_clear_errors(
    client: tuple[TestClient, Path], path: str, status: int
) -> None:
    c, _ = client
    response = c.get(path)
    assert response.status_code == status
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("path", "template", "parameter"),
    [
        (
            "/api/v1/patients/patient-1/vitals/8867-4?start_ms=10&end_ms=5",
            "/api/v1/patients/{patient_id}/vitals/{code}",
            "start_ms",
        ),
        (
            "/api/v1/patients/patient-1/vitals/8867-4?bucket_s=0.001&start_ms=0",
            "/api/v1/patients/{patient_id}/vitals/{code}",
            "bucket_s",
        ),
        ("/api/v1/consistency?old=3&new=2", "/api/v1/consistency", "old"),
    ],
)
def test_a_rule_across_parameters_is_a_422_shaped_like_a_bounds(
    client: tuple[TestClient, Path], path: str, template: str, parameter: str
) -> None:
    # They answered {"detail": "..."}, which the 422 FastAPI documents (a list) does not allow.
    c, _ = client
    response = c.get(path)
    assert response.status_code == 422
    conforms(c.get("/openapi.json").json(), template, "get", response)
    (detail,) = response.json()["detail"]
    assert (detail["loc"], detail["type"]) == (["query", parameter], "value_error")
    assert parameter.split("_")[0] in detail["msg"]


def conforms(document: dict[str, Any], template: str, method: str, response: Response) -> None:
    """The response's body is one the OpenAPI document declares for its status."""
    declared = document["paths"][template][method]["responses"][str(response.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})


def test_every_refusal_is_one_the_openapi_document_declares(
    client: tuple[TestClient, Path],
) -> None:
    # The token check's 401, the policy's 403 and the routes' 404s were not declared, and the
    # consent routes' 401 was declared with a reason it does not carry.
    c, _ = client
    document = c.get("/openapi.json").json()
    refusals = [
        ("get", "/api/v1/patients", "/api/v1/patients", {"Authorization": ""}, 401),
        ("get", "/api/v1/ledger", "/api/v1/ledger", {"Authorization": "Bearer x"}, 401),
        ("post", "/api/v1/me/keys", "/api/v1/me/keys", {"Authorization": ""}, 401),
        ("get", "/api/v1/patients/{patient_id}/vitals", "/api/v1/patients/nobody/vitals", {}, 403),
        ("get", "/api/v1/patients/{patient_id}/access-log", "/api/v1/patients/patient-1/access-log", {}, 403),
        ("get", "/api/v1/patients/{patient_id}/vitals", "/api/v1/patients/patient-9/vitals", {}, 404),
        ("get", "/api/v1/readings/{index}", "/api/v1/readings/999", {}, 404),
        ("get", "/api/v1/readings/{index}/proof", "/api/v1/readings/999/proof", {}, 404),
        ("get", "/api/v1/blocks/{height}", "/api/v1/blocks/9", {}, 404),
        ("get", "/api/v1/consistency", "/api/v1/consistency?old=1&new=99", {}, 404),
        ("get", "/api/v1/consistency", "/api/v1/consistency?old=2&new=1", {}, 422),
        ("get", "/api/v1/me/consents", "/api/v1/me/consents", {}, 403),
    ]  # fmt: skip
    for method, template, path, headers, status in refusals:
        response = c.request(
            method.upper(), path, headers=headers, json={} if method == "post" else None
        )
        assert response.status_code == status, (path, response.text)
        conforms(document, template, method, response)


def test_a_method_a_path_does_not_take_is_told_every_method_it_does(
    client: tuple[TestClient, Path],
) -> None:
    # Starlette named the methods of the path's first route only: "Allow: GET" here.
    c, _ = client
    for method in ("OPTIONS", "PUT", "DELETE"):
        response = c.request(method, "/api/v1/me/consents")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
    assert c.request("DELETE", "/api/v1/patients").headers["allow"] == "GET"
    assert c.request("GET", "/auth/token").headers["allow"] == "POST"
    assert c.request("PUT", "/static/app.js").headers["allow"] == "GET, HEAD"  # the mount's own


def test_openapi_schema_lists_the_telemedicine_endpoints(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    paths = c.get("/openapi.json").json()["paths"]
    for path in [
        "/api/v1/patients",
        "/api/v1/patients/{patient_id}/vitals",
        "/api/v1/patients/{patient_id}/vitals/{code}",
        "/api/v1/readings/{index}",
        "/api/v1/readings/{index}/proof",
        "/api/v1/checkpoint",
    ]:
        assert path in paths


def test_the_page_and_health(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    assert "vitaltrail" in c.get("/").text
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/healthz").json() == {"status": "ok"}


def test_a_reading_not_yet_sealed_has_no_proof_yet(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=1, readings=1)
    runtime = build_ingest(settings)
    registry = DeviceRegistry(settings.registry_path)
    signer = DeviceSigner.generate()
    registry.register("late-band", "patient-9", signer.key)
    registry.close()
    topic = readings_topic(settings.topic_root, "late-band")
    runtime.ingestor.pipeline.process(
        [InboundMessage(topic, signed("late-band", signer, 0), 0, 1, 0, 0)], now_ms()
    )
    runtime.close()  # appended, not sealed
    headers = ward_headers(settings, ["patient-0", "patient-9"])
    with TestClient(create_app(data_sources(settings)), headers=headers) as c:
        assert c.get("/api/v1/readings/1/proof").status_code == 200  # after a registration
        assert c.get("/api/v1/readings/3").json()["sealed"] is False
        response = c.get("/api/v1/readings/3/proof")
        assert response.status_code == 409
        assert "not sealed" in response.json()["detail"]


def test_metrics_expose_every_rejection_reason(tmp_path: Path) -> None:
    from ingest.metrics import IngestMetrics
    from ingest.reasons import Reason

    settings = populate(tmp_path / "data", patients=1, readings=1)
    metrics = IngestMetrics()
    metrics.rejected.labels(reason=Reason.BAD_SIGNATURE.value).inc(3)
    tokens = Tokens(settings)
    with TestClient(create_app(data_sources(settings, metrics))) as c:
        assert c.get("/metrics").status_code == 401  # not public
        clinician = c.get("/metrics", headers=tokens.headers("dr-ada", "clinician"))
        assert clinician.status_code == 403
        text = c.get("/metrics", headers=tokens.headers("root", "admin")).text
    tokens.close()
    assert 'vitaltrail_messages_rejected_total{reason="bad_signature"} 3.0' in text
    for reason in Reason:
        assert f'reason="{reason.value}"' in text
    assert "vitaltrail_receive_to_durable_seconds_bucket" in text


def test_blocks_and_consistency_proofs_between_their_checkpoints(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", readings=6, blocks=2)
    key = NoteVerifier.parse(settings.ledger_key_path.with_suffix(".pub").read_text())
    tokens = Tokens(settings)
    headers = bearer(tokens.app("auditor-app"))  # any valid token: no patient data here
    tokens.close()
    with TestClient(create_app(data_sources(settings)), headers=headers) as c:
        first, second = (c.get(f"/api/v1/blocks/{h}").json() for h in (0, 1))
        assert c.get("/api/v1/blocks/2").status_code == 404
        old, new = (
            Checkpoint.parse(open_note(b["checkpoint"], [key])[0].text) for b in (first, second)
        )
        assert (old.size, new.size) == (12, 21)  # 3 registrations + 9 readings, then 9 more
        assert (
            base64.b64decode(second["prev_hash"])
            == Block(
                first["height"],
                first["tree_size"],
                first["checkpoint"],
                base64.b64decode(first["prev_hash"]),
                first["sealed_at_ms"],
            ).hash()
        )
        proof = c.get("/api/v1/consistency", params={"old": 12, "new": 21}).json()["proof"]
        verify_consistency(12, 21, old.root, new.root, [base64.b64decode(h) for h in proof])
        assert c.get("/api/v1/consistency", params={"old": 21, "new": 12}).status_code == 422
        assert c.get("/api/v1/consistency", params={"old": 1, "new": 99}).status_code == 404
        assert c.get("/api/v1/consistency", params={"old": 0, "new": 5}).status_code == 422
        assert c.get("/api/v1/blocks/0", headers={"Authorization": ""}).status_code == 401
