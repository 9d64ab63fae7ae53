"""Subscription resources as clients send them, and Observations as the engine sees them."""

from __future__ import annotations

from typing import Any

from devices.reading import Reading, Sample
from devices.vitals import GLUCOSE
from fhirserver.observations import observations_of
from fhirserver.subscription_engine import NewObservation
from fhirserver.subscription_topics import NEW_VITAL_SIGNS
from fhirserver.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    MAX_COUNT,
    PAYLOAD_CONTENT,
    TIMEOUT,
)
from tests.fhir_validation import validate
from tests.stack import now_ms, vitals

BASE = "https://vitaltrail.example"
HOOK = "https://receiver.example/hook"


def subscription_doc(
    patient: str = "patient-0",
    *,
    base: str = BASE,
    channel: str = "rest-hook",
    endpoint: str | None = HOOK,
    content: str | None = "id-only",
    heartbeat_s: int | None = None,
    timeout_s: int | None = None,
    max_count: int | None = None,
    headers: list[str] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A topic-based Subscription as the Backport IG's R4 example shapes it."""
    extensions: list[dict[str, Any]] = []
    if heartbeat_s is not None:
        extensions.append({"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat_s})
    if timeout_s is not None:
        extensions.append({"url": TIMEOUT, "valueUnsignedInt": timeout_s})
    if max_count is not None:
        extensions.append({"url": MAX_COUNT, "valuePositiveInt": max_count})
    channel_doc: dict[str, Any] = {"type": channel, "payload": "application/fhir+json"}
    if extensions:
        channel_doc["extension"] = extensions
    if endpoint is not None and channel == "rest-hook":
        channel_doc["endpoint"] = endpoint
    if content is not None:
        channel_doc["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]}
    if headers is not None:
        channel_doc["header"] = headers
    doc: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "watch the heart rate",
        "criteria": NEW_VITAL_SIGNS.url(base),
        "_criteria": {
            "extension": [
                {"url": FILTER_CRITERIA, "valueString": f"Observation?patient=Patient/{patient}"}
            ]
        },
        "channel": channel_doc,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def new_observations(
    patient: str, entry_index: int, hr: float = 72, *, glucose: bool = False
) -> list[NewObservation]:
    """What one reading of a band (heart rate, SpO2) at ``entry_index`` becomes."""
    t = now_ms()
    samples: tuple[Sample, ...] = vitals(t, hr=hr)
    if glucose:
        samples += (Sample(GLUCOSE.code, GLUCOSE.unit, 110, t),)
    reading = Reading(f"{patient}-band", entry_index, samples)
    return [
        NewObservation(entry_index, patient, resource)
        for resource in observations_of(reading, entry_index, patient, t)
    ]


def notification_type(bundle: dict[str, Any]) -> str:
    """The ``type`` of a notification (validated first)."""
    validate(bundle)
    params = bundle["entry"][0]["resource"]["parameter"]
    return str(next(p["valueCode"] for p in params if p["name"] == "type"))


def event_numbers(bundle: dict[str, Any]) -> list[int]:
    """The event numbers a notification carries."""
    params = bundle["entry"][0]["resource"]["parameter"]
    return [int(p["part"][0]["valueString"]) for p in params if p["name"] == "notification-event"]
