"""Notification Bundles of the R5 Backport IG on R4, and the other answers the IG defines.

A notification (profile ``backport-subscription-notification-r4``) is a ``history`` Bundle
whose first entry is a ``Parameters`` (profile ``backport-subscription-status-r4``): the
subscription, its topic, its status, the notification ``type`` (``handshake``, ``heartbeat``,
``event-notification``; ``query-status`` and ``query-event`` answer ``$status`` and ``$events``),
``events-since-subscription-start`` and one ``notification-event`` per event (its number, when,
and - unless the content is ``empty`` - its ``focus``, the Observation). A ``full-resource``
notification carries each Observation as a further entry; ``id-only`` the entry without the
resource. A history Bundle's entries each need ``request`` and ``response`` (bdl-3, bdl-4): the
status entry's request is the ``$status`` call, an Observation's is its creation.

The status never names the patient: a handshake or heartbeat carries no patient data, so only
event notifications (with a focus) are access events (see ``fhirserver.subscription_engine``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from fhirserver.outcome import REASON_SYSTEM
from fhirserver.subscription_store import Event, StoredSubscription
from fhirserver.subscriptions import IG, Content, Status, instant_of

NOTIFICATION_PROFILE = IG + "backport-subscription-notification-r4"
STATUS_PROFILE = IG + "backport-subscription-status-r4"
NotificationType = Literal[
    "handshake", "heartbeat", "event-notification", "query-status", "query-event"
]


def subscription_url(base_url: str, sub_id: str) -> str:
    return f"{base_url}/fhir/Subscription/{sub_id}"


def status_parameters(
    sub: StoredSubscription,
    kind: NotificationType,
    base_url: str,
    events: Sequence[Event] = (),
    *,
    status: Status | None = None,
    content: Content | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus of ``sub`` as R4 ``Parameters``."""
    content = content or sub.spec.content
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": subscription_url(base_url, sub.id)}},
    ]  # fmt: skip
    if content != "empty":  # the IG: the topic SHOULD NOT be in an empty notification
        parameters.append({"name": "topic", "valueCanonical": sub.spec.topic.url(base_url)})
    parameters += [
        {"name": "status", "valueCode": status or sub.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(sub.events)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": instant_of(event.time_ms)},
        ]
        if content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": event.focus}})
        parameters.append({"name": "notification-event", "part": parts})
    if sub.error is not None:
        code, _, text = sub.error.partition(": ")
        parameters.append(
            {
                "name": "error",
                "valueCodeableConcept": {
                    "coding": [{"system": REASON_SYSTEM, "code": code}],
                    "text": text or code,
                },
            }
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    sub: StoredSubscription,
    kind: NotificationType,
    base_url: str,
    now_ms: int,
    events: Sequence[Event] = (),
    *,
    status: Status | None = None,
    content: Content | None = None,
    bundle_id: str | None = None,
) -> dict[str, Any]:
    """A notification of ``sub`` (or the answer of its ``$events``)."""
    content = content or sub.spec.content
    parameters = status_parameters(sub, kind, base_url, events, status=status, content=content)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {"method": "GET", "url": subscription_url(base_url, sub.id) + "/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for event in events:
            entry: dict[str, Any] = {"fullUrl": f"{base_url}/fhir/{event.focus}"}
            if content == "full-resource":
                entry["resource"] = event.resource
            entry["request"] = {"method": "POST", "url": event.resource["resourceType"]}
            entry["response"] = {"status": "201"}
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": bundle_id or str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant_of(now_ms),
        "entry": entries,
    }


def status_bundle(subs: Sequence[StoredSubscription], base_url: str) -> dict[str, Any]:
    """The answer of ``$status``: a searchset of each subscription's status."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(subs),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{parameters['id']}",
                "resource": parameters,
                "search": {"mode": "match"},
            }
            for parameters in (status_parameters(s, "query-status", base_url) for s in subs)
        ],
    }


def binding_token_parameters(
    token: str, expires_ms: int, sub_ids: Sequence[str], websocket_url: str
) -> dict[str, Any]:
    """The answer of ``$get-ws-binding-token``."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": instant_of(expires_ms)},
            *({"name": "subscription", "valueString": s} for s in sub_ids),
            {"name": "websocket-url", "valueUrl": websocket_url},
        ],
    }
