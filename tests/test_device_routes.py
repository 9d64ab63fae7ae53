"""``GET /api/v1/patients/{patient_id}/devices`` (dashboards/device_routes.py): each device of a
patient with its key, last message, battery and signature failures, behind the path-patient
gate and on record in the access trail."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient

from dashboards.app import create_app
from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, encode_reading
from devices.registry import DeviceRegistry
from ingest.mqtt_source import InboundMessage
from tests.api_access import access_events, assign, writer_and_readers
from tests.populated import populate
from tests.stack import forged, now_ms, vitals
from vitaltrail.runtime import build_ingest, data_sources

P0 = "patient-0"
DEVICES = f"/api/v1/patients/{P0}/devices"


def test_a_patient_s_devices_with_battery_failures_and_key_status(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=2, readings=2)
    callers = writer_and_readers(settings, P0)
    registry = DeviceRegistry(settings.registry_path)
    watch = DeviceSigner.generate()
    registry.register("patient-0-watch", P0, watch.key)
    registry.register("patient-0-old", P0, DeviceSigner.generate().key)
    registry.revoke("patient-0-old")
    registry.close()
    # the watch reports 15 %; then three messages in its name fail their signature
    now = now_ms()
    topic = readings_topic(settings.topic_root, "patient-0-watch")
    good = sign1(watch, encode_reading(Reading("patient-0-watch", 0, vitals(now), 15)))
    forgeries = [
        forged(sign1(watch, encode_reading(Reading("patient-0-watch", s, vitals(now)))))
        for s in (1, 2, 3)
    ]
    runtime = build_ingest(settings)
    runtime.ingestor.pipeline.process(
        [InboundMessage(topic, m, i, 1, 0, 0) for i, m in enumerate([good, *forgeries])], now
    )
    runtime.ingestor.pipeline.seal(now)
    runtime.close()

    with TestClient(create_app(replace(data_sources(settings), alerts_interval_s=0))) as client:
        before = len(access_events(settings))
        answer = client.get(DEVICES, headers=callers["clinician in care team"])
        assert answer.status_code == 200, answer.text
        event = access_events(settings)[before].access
        assert (event.outcome, event.patients) == ("permit", (P0,))
        assert event.route == "GET /api/v1/patients/{patient_id}/devices"
        body = answer.json()
        assert body["patient_id"] == P0
        by_id = {d["device_id"]: d for d in body["devices"]}
        assert set(by_id) == {"patient-0-band", "patient-0-watch", "patient-0-old"}
        band, watch_out, old = (
            by_id["patient-0-band"],
            by_id["patient-0-watch"],
            by_id["patient-0-old"],
        )
        assert band["key_status"] == "active"
        assert band["last_seen_ms"] is not None
        assert (band["battery_pct"], band["signature_failures"], band["silent"]) == (None, 0, False)
        assert watch_out["key_thumbprint"] == watch.key.kid.hex()
        assert (watch_out["battery_pct"], watch_out["battery_low"]) == (15, True)
        assert watch_out["battery_time_ms"] == now
        assert (watch_out["signature_failures"], watch_out["last_failure_reason"]) == (
            3,
            "bad_signature",
        )
        assert watch_out["last_failure_ms"] == now
        assert (old["key_status"], old["last_seen_ms"], old["silent"]) == ("revoked", None, False)

        for caller, status in [
            ("patient self", 200),
            ("app with consent", 200),
            ("clinician out of care team", 403),
            ("admin", 403),
        ]:
            assert client.get(DEVICES, headers=callers[caller]).status_code == status, caller
        assert client.get(DEVICES).status_code == 401
        # a patient the clinician may read who has no device: 404 in the API's shape
        assign(settings, "ward-b", ["dr-in"], ["patient-9"])
        none = client.get(
            "/api/v1/patients/patient-9/devices", headers=callers["clinician in care team"]
        )
        assert none.status_code == 404, none.text
        assert none.json() == {"detail": "no devices registered to patient patient-9"}


def test_the_api_s_alert_engine_raises_the_technical_alerts_on_its_own(tmp_path: Path) -> None:
    """No test calls the engine here: the app's timer finds the watch below 20 %, three forged
    messages in its name, and a registered cuff that never spoke (silent after 1 s)."""
    settings = populate(
        tmp_path / "data", patients=1, readings=2, device_silent_after_s=1.0,
        device_silent_unknown_after_s=1.0,
    )  # fmt: skip
    callers = writer_and_readers(settings, P0)
    registry = DeviceRegistry(settings.registry_path)
    watch = DeviceSigner.generate()
    registry.register("patient-0-watch", P0, watch.key)
    registry.register("patient-0-cuff", P0, DeviceSigner.generate().key)
    registry.close()
    now = now_ms()
    topic = readings_topic(settings.topic_root, "patient-0-watch")
    messages = [sign1(watch, encode_reading(Reading("patient-0-watch", 0, vitals(now), 15)))]
    messages += [
        forged(sign1(watch, encode_reading(Reading("patient-0-watch", s, vitals(now)))))
        for s in (1, 2, 3)
    ]
    runtime = build_ingest(settings)
    runtime.ingestor.pipeline.process(
        [InboundMessage(topic, m, i, 1, 0, 0) for i, m in enumerate(messages)], now
    )
    runtime.ingestor.pipeline.seal(now)
    runtime.close()
    sources = replace(data_sources(settings), alerts_interval_s=0.2)
    expected = {
        ("battery-low", "patient-0-watch"),
        ("signature-failures", "patient-0-watch"),
        ("device-silent", "patient-0-cuff"),
    }
    with TestClient(create_app(sources)) as client:
        found: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 10
        while not expected <= found and time.monotonic() < deadline:
            time.sleep(0.2)
            alerts = client.get("/api/v1/alerts", headers=callers["clinician in care team"])
            technical = [a for a in alerts.json() if a["category"] == "technical"]
            found = {(a["kind"], a["parameter"]) for a in technical}
        assert expected <= found
        clinical = client.get("/api/v1/alerts", headers=callers["clinician in care team"])
        assert all(a["parameter"] != "patient-0-watch" for a in clinical.json()
                   if a["category"] == "clinical")  # fmt: skip
