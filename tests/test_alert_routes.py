"""The alert engine on its timer and the alerts served: a stale alert on the clock alone, a
NEWS2 crossing raised within one interval, acknowledgement and snooze by the care team (or
break-glass) on record in the access trail, everyone else refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinical.alert_store import AlertStore
from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.registry import DeviceRegistry
from ingest.mqtt_source import InboundMessage
from tests.api_access import access_events, assign, writer_and_readers
from tests.auth_app import add_users, auth_app, client, csrf_token, sign_in
from tests.populated import populate
from tests.stack import now_ms, signed, vitals
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.settings import Settings

P0 = "patient-0"
ALERTS = f"/api/v1/patients/{P0}/alerts"
INTERVAL_S = 0.1
MINUTE_MS = 60_000


class Clock:
    """Wall time plus an offset the test advances."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms


@dataclass
class World:
    client: TestClient
    settings: Settings
    clock: Clock
    callers: dict[str, dict[str, str]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = populate(tmp_path / "data", patients=2, readings=2)
    callers = writer_and_readers(settings, P0)
    clock = Clock()
    sources = replace(data_sources(settings), alerts_interval_s=INTERVAL_S, clock_ms=clock)
    with TestClient(create_app(sources)) as c:
        yield World(c, settings, clock, callers)


def _open(w: World, patient: str = P0) -> list[dict[str, Any]]:
    answer = w.client.get(
        f"/api/v1/patients/{patient}/alerts", headers=w.callers["clinician in care team"]
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["open"]
    return found


def _wait_for(
    w: World, found: Callable[[list[dict[str, Any]]], bool], within_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within_s
    while True:
        alerts = _open(w)
        if found(alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(INTERVAL_S / 4)


def _stale_pulse(w: World) -> dict[str, Any]:
    """Advance the clock past the pulse's stale limit (5 min) with no new reading."""
    w.clock.offset_ms += 6 * MINUTE_MS
    alerts = _wait_for(w, lambda a: any(x["kind"] == "stale" for x in a), 3.0)
    return next(x for x in alerts if (x["kind"], x["parameter"]) == ("stale", "pulse"))


def test_a_stale_alert_fires_with_only_the_clock_advancing(world: World) -> None:
    time.sleep(3 * INTERVAL_S)  # rounds run with fresh data: nothing to raise
    assert _open(world) == []
    stale = _stale_pulse(world)
    assert (stale["severity"], stale["state"], stale["category"]) == ("low", "raised", "clinical")
    assert "no pulse reading for 6 min" in stale["message"]
    history = world.client.get(ALERTS, headers=world.callers["clinician in care team"]).json()
    assert ("raised", None) in [(e["event"], e["by"]) for e in history["history"]]


def _ingest(settings: Settings, patient: str, hr: float, spo2: float) -> None:
    """A new band for the patient sends one reading (what the ingestor would store)."""
    signer = DeviceSigner.generate()
    device = f"{patient}-band-2"
    registry = DeviceRegistry(settings.registry_path)
    registry.register(device, patient, signer.key)
    registry.close()
    runtime = build_ingest(settings)
    message = signed(device, signer, 0, vitals(now_ms(), hr=hr, spo2=spo2))
    topic = readings_topic(settings.topic_root, device)
    runtime.ingestor.pipeline.process([InboundMessage(topic, message, 0, 1, 0, 0)], now_ms())
    runtime.ingestor.pipeline.seal(now_ms())


def test_a_reading_crossing_news2_5_raises_a_medium_alert_within_one_interval(
    world: World,
) -> None:
    time.sleep(3 * INTERVAL_S)
    assert _open(world) == []
    _ingest(world.settings, P0, hr=135, spo2=90)  # pulse 3 + SpO2 3 = 6
    stored_ms = now_ms()
    alerts = _wait_for(world, lambda a: any(x["kind"] == "news2" for x in a), 2.0)
    news2 = next(x for x in alerts if x["kind"] == "news2")
    assert (news2["severity"], news2["message"][:7]) == ("medium", "NEWS2 6")
    # Raised by the first round after the reading: a round starts an interval after the last
    # one ended, so within an interval plus a round's own time (the clock is wall time here).
    took_ms = news2["raised_ms"] - stored_ms
    assert 0 <= took_ms <= INTERVAL_S * 1000 + 400, took_ms
    extremes = {x["parameter"] for x in alerts if x["kind"] == "extreme"}
    assert extremes == {"pulse", "spo2"}
    ward = world.client.get("/api/v1/alerts", headers=world.callers["clinician in care team"])
    assert ward.status_code == 200
    assert ward.json()[0]["kind"] == "news2"  # most severe first
    assert {a["patient_id"] for a in ward.json()} == {P0}  # patient-1 is not this team's


def _act(w: World, caller: str, alert_id: str, action: str, **headers: str) -> Any:
    body = {"minutes": 30} if action == "snooze" else None
    return w.client.post(
        f"{ALERTS}/{alert_id}/{action}", json=body, headers={**w.callers[caller], **headers}
    )


def test_acknowledgement_records_who_and_when_in_the_store_and_theaccess_events(
    world: World,
) -> None:
    stale = _stale_pulse(world)
    before = len(access_events(world.settings))
    answer = _act(world, "clinician in care team", stale["id"], "acknowledge")
    assert answer.status_code == 200, answer.text
    acked = answer.json()
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "dr-in")
    assert abs(acked["acknowledged_ms"] - world.clock()) < 5_000
    trail = access_events(world.settings)
    assert len(trail) == before + 1
    event = trail[-1].access
    assert (event.outcome, event.interaction, event.patients) == ("permit", "create", (P0,))
    assert event.route == "POST /api/v1/patients/{patient_id}/alerts/{alert_id}/acknowledge"
    assert event.agent.id == "dr-in"
    store = AlertStore(world.settings.alerts_path)
    (last, *_) = store.history(P0)
    store.close()
    assert (last.kind.value, last.by, last.alert.id) == ("acknowledged", "dr-in", stale["id"])
    time.sleep(3 * INTERVAL_S)  # the engine's rounds leave the acknowledgement alone
    assert [x["state"] for x in _open(world) if x["id"] == stale["id"]] == ["acknowledged"]
    again = _act(world, "clinician in care team", stale["id"], "acknowledge")
    assert (again.status_code, again.json()["reason"]) == (409, "already-acknowledged")


def test_a_snooze_holds_then_a_resolved_alert_refuses_actions(world: World) -> None:
    stale = _stale_pulse(world)
    answer = _act(world, "clinician in care team", stale["id"], "snooze")
    assert answer.status_code == 200, answer.text
    until = answer.json()["snoozed_until_ms"]
    assert answer.json()["state"] == "snoozed"
    world.clock.offset_ms += 10 * MINUTE_MS  # still stale, within the snooze
    time.sleep(3 * INTERVAL_S)
    held = next(x for x in _open(world) if x["id"] == stale["id"])
    assert (held["state"], held["snoozed_until_ms"]) == ("snoozed", until)
    for minutes in (0, -5, 241):
        bad = world.client.post(
            f"{ALERTS}/{stale['id']}/snooze",
            json={"minutes": minutes},
            headers=world.callers["clinician in care team"],
        )
        assert (bad.status_code, bad.json()["detail"][0]["type"]) == (422, "bad-snooze"), minutes
    # Acknowledging ends the snooze; then the pulse is current again and the alert resolves.
    acked = _act(world, "clinician in care team", stale["id"], "acknowledge")
    assert (acked.json()["state"], acked.json()["snoozed_until_ms"]) == ("acknowledged", None)
    world.clock.offset_ms = 0
    _ingest(world.settings, P0, hr=72, spo2=97)
    gone = _wait_for(world, lambda a: all(x["id"] != stale["id"] for x in a), 3.0)
    assert all(x["id"] != stale["id"] for x in gone)
    late = _act(world, "clinician in care team", stale["id"], "acknowledge")
    assert (late.status_code, late.json()["reason"]) == (409, "alert-resolved")
    missing = _act(world, "clinician in care team", "0" * 32, "acknowledge")
    assert (missing.status_code, missing.json()["reason"]) == (404, "no-such-alert")


def test_only_the_care_team_or_break_glass_acts_and_every_attempt_is_on_record(
    world: World,
) -> None:
    stale = _stale_pulse(world)
    for caller, reason in [
        ("clinician out of care team", "not-in-care-team"),
        ("patient self", "may-not-write"),
        ("app with consent", "may-not-write"),
        ("admin", "admin-reads-no-patient-data"),
    ]:
        for action in ("acknowledge", "snooze"):
            before = len(access_events(world.settings))
            answer = _act(world, caller, stale["id"], action)
            assert answer.status_code == 403, (caller, action)
            trail = access_events(world.settings)
            assert len(trail) == before + 1
            event = trail[-1].access
            assert (event.outcome, event.reason, event.interaction) == ("deny", reason, "create")
    assert next(x for x in _open(world) if x["id"] == stale["id"])["state"] == "raised"
    glass = _act(
        world, "clinician out of care team", stale["id"], "acknowledge",
        **{"X-Break-Glass-Reason": "arrest"},
    )  # fmt: skip
    assert glass.status_code == 200, glass.text
    assert glass.json()["acknowledged_by"] == "dr-out"
    event = access_events(world.settings)[-1].access
    assert (event.reason, event.break_glass, event.interaction) == (
        "break-glass",
        "arrest",
        "create",
    )
    # Reading: the care team, the patient and the consented app see the alert; others do not.
    for caller, status in [
        ("patient self", 200),
        ("app with consent", 200),
        ("clinician out of care team", 403),
        ("admin", 403),
    ]:
        answer = world.client.get(ALERTS, headers=world.callers[caller])
        assert answer.status_code == status, caller
        ward = world.client.get("/api/v1/alerts", headers=world.callers[caller])
        if caller == "admin":
            assert ward.status_code == 403  # an admin reads no patient data
            continue
        assert ward.status_code == 200
        assert {a["patient_id"] for a in ward.json()} == ({P0} if status == 200 else set())


def test_a_session_acts_only_with_its_csrf_token(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=1, readings=1)
    assign(settings, "ward", ["nurse.ada"], [P0])
    add_users(tmp_path / "auth", ("nurse.ada", "clinician", None))
    with client(auth_app(settings, tmp_path / "auth")) as c:
        sign_in(c, "nurse.ada")
        assert c.get("/api/v1/alerts").json() == []  # fresh readings: nothing to raise
        path = f"{ALERTS}/{'a' * 32}/acknowledge"
        refused = c.post(path)
        assert (refused.status_code, refused.json()["reason"]) == (403, "csrf_missing")
        answer = c.post(path, headers={"x-csrf-token": csrf_token(c)})
        assert (answer.status_code, answer.json()["reason"]) == (404, "no-such-alert")
