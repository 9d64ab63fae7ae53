"""The alert engine on a timer, and the alerts served.

:func:`run_alerts` runs in the app's lifespan: every ``alerts_interval_s`` it evaluates every
patient with data (``clinical.alert_engine``) on the read pool, new readings or not, so a vital
that stops arriving raises its stale alert on the clock alone; in between, every ``follow_s``,
the patients whose latest values moved, so a crossing raises its alert within about that.

``GET /api/v1/alerts``: the open alerts of the patients the caller may see (the ward listing's
gate, recorded). ``GET /api/v1/patients/{patient_id}/alerts``: one patient's open alerts and
recent history. ``POST .../alerts/{alert_id}/acknowledge`` and ``.../snooze`` (``{"minutes"}``):
a clinician of the care team, or one who breaks the glass, through the write gate - the action
(a ``create``, naming who and which patient) is in the access trail before it takes effect;
patients, apps and admins may not. A browser session's POST carries its CSRF token. Refusals:
``{"detail", "reason"}``, 404 no-such-alert, 409 already-acknowledged or alert-resolved; a
snooze past the limit is a 422 in FastAPI's shape, its ``type`` bad-snooze.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from access.policy import Decision, safe_id
from clinical.alert_engine import WRITING, LatestValue, active_devices, evaluate_ward
from clinical.alerts import (
    Alert,
    AlertConfig,
    AlertError,
    Event,
    Kind,
    acknowledge,
    snooze,
)
from clinical.news2 import MEASURED_LOINC, MINUTE_MS, Parameter
from dashboards.access_deps import Caller, PathPatient, PathPatientWrite, PatientId, VisiblePatients
from dashboards.alert_hub import FOLLOW_S, AlertHub, hub_of
from dashboards.alert_schemas import AlertOut, EventOut, PatientAlerts, SnoozeIn
from dashboards.reads import Readers, ReadPool, read_pool
from dashboards.refusals import RefusalOut, Refused, RefusingRoute, error, invalid_body
from dashboards.route_rules import PatientData, access

log = logging.getLogger("vitaltrail.api.alerts")

router = APIRouter(route_class=RefusingRoute, tags=["clinical"])
PATIENT_ALERTS = "/api/v1/patients/{patient_id}/alerts"
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="an alert's id")]
ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": RefusalOut, "description": "no such alert of this patient (no-such-alert)"},
    409: {"model": RefusalOut, "description": "already-acknowledged, or alert-resolved"},
}


class ReadingsFollower:
    """Which patients have new readings since the last look: the store's latest value of each
    vital is compared with the one seen before (one small query, not a scan of readings)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[int, float]] | None = None

    def changed(self, latest: Iterable[LatestValue]) -> set[str]:
        """The patients whose latest values moved (none on the first look: a full round
        covers them)."""
        now = {(v.patient_id, v.code): (v.time_ms, v.value) for v in latest}
        before, self._seen = self._seen, now
        if before is None:
            return set()
        return {key[0] for key, value in now.items() if before.get(key) != value}


async def run_alerts(
    reads: ReadPool,
    config: AlertConfig,
    interval_s: float,
    clock_ms: Callable[[], int],
    *,
    follow_s: float = FOLLOW_S,
    hub: AlertHub | None = None,
) -> None:
    """Evaluate the ward every ``interval_s``, and every ``follow_s`` the patients with new
    readings, until cancelled: a reading crossing a threshold raises its alert within about
    ``follow_s``, a vital that stops arriving its stale alert on the clock. One task does both,
    so a round on older values never overwrites a newer one's change. A busy pool or a failed
    round is tried again the next time. ``hub`` hears of changed alerts and new readings."""
    follower = ReadingsFollower()
    step_s = min(interval_s, follow_s) if follow_s > 0 else interval_s
    next_full = time.monotonic() + interval_s

    def round_(r: Readers, *, full: bool) -> tuple[list[Event], bool]:
        latest = r.store.latest()
        changed = follower.changed(latest)
        if not (full or changed):
            return [], False
        chosen = latest if full else [v for v in latest if v.patient_id in changed]
        now = clock_ms()
        worn = [d for d in active_devices(r.registry.all()) if full or d.patient_id in changed]
        window = config.devices.signature_window_ms
        statuses = (
            r.device_status.statuses(now, window, [d.device_id for d in worn]) if worn else {}
        )
        events = evaluate_ward(
            chosen, r.documented, r.alerts, now, config, devices=worn, statuses=statuses
        )
        return events, bool(changed)

    while True:
        await asyncio.sleep(step_s)
        full = time.monotonic() >= next_full
        if full:
            next_full = time.monotonic() + interval_s
        try:
            events, readings = await reads.run(functools.partial(round_, full=full))
        except HTTPException:
            continue  # the pool is busy with requests: the next round catches up
        except Exception as exc:  # the next round tries again
            log.warning("an alert round failed: %s", type(exc).__name__)
            continue
        if hub is not None:
            if readings:
                hub.readings_arrived(clock_ms())
            if events:
                hub.alerts_changed()


def _codes(alert: Alert) -> tuple[str, ...]:
    """The LOINC codes an alert tells something of (a NEWS2 tier: every measured vital)."""
    if alert.key.kind in (Kind.EXTREME, Kind.STALE) and alert.key.parameter in MEASURED_LOINC:
        return (MEASURED_LOINC[Parameter(alert.key.parameter)],)
    if alert.key.kind is Kind.NEWS2:
        return tuple(MEASURED_LOINC.values())
    return ()


def shown(decision: Decision, alert: Alert) -> bool:
    """An app sees an alert only if its consents cover every vital the alert is about."""
    return all(decision.shows(code) for code in _codes(alert))


@router.get("/api/v1/alerts")
@access(PatientData("vital-signs"))
async def ward_alerts(request: Request, listing: VisiblePatients) -> list[AlertOut]:
    """The open alerts of the patients the caller may see, most severe first."""
    decision = listing.decision
    visible = set(decision.patients) if decision.permit else set()
    if not visible:
        return []
    current = await read_pool(request).run(lambda r: r.alerts.current())
    alerts = [a for a in current.values() if a.key.patient_id in visible and shown(decision, a)]
    return [AlertOut.of(a) for a in sorted(alerts, key=AlertOut.order)]


@router.get(PATIENT_ALERTS)
@access(PatientData("vital-signs"))
async def patient_alerts(
    request: Request, patient_id: PatientId, decision: PathPatient
) -> PatientAlerts:
    """The patient's open alerts, and the history of changes to any of them, newest first."""

    def read(r: Readers) -> PatientAlerts:
        current = r.alerts.current(patient_id).values()
        history = r.alerts.history(patient_id)
        return PatientAlerts(
            patient_id=patient_id,
            open=[
                AlertOut.of(a) for a in sorted(current, key=AlertOut.order) if shown(decision, a)
            ],
            history=[EventOut.of(e) for e in history if shown(decision, e.alert)],
        )

    return await read_pool(request).run(read)


async def _act(
    request: Request,
    patient_id: str,
    alert_id: str,
    action: Callable[[Alert, int], tuple[Alert, Event]],
) -> AlertOut:
    """Apply a staff action to the patient's alert and save its event, under the lock the
    engine's rounds take, so neither saves over the other."""
    now = request.app.state.clock_ms()

    def act(r: Readers) -> Alert:
        with WRITING:
            alert = r.alerts.get(alert_id)
            if alert is None:
                alert = r.alerts.last_of(alert_id)  # a resolved one says so
            if alert is None or alert.key.patient_id != patient_id:
                raise Refused(404, "no-such-alert", f"no alert {alert_id} of this patient")
            try:
                done, event = action(alert, now)
            except AlertError as exc:
                if exc.reason == "bad-snooze":
                    raise invalid_body(exc.reason, str(exc)) from None
                raise Refused(409, exc.reason, str(exc)) from None
            r.alerts.save([event])
            return done

    done = await read_pool(request).run(act)
    hub = hub_of(request.app)
    if hub is not None:
        hub.alerts_changed()
    return AlertOut.of(done)


@router.post(PATIENT_ALERTS + "/{alert_id}/acknowledge", responses=ACTION_RESPONSES)
@access(PatientData("vital-signs"))
async def acknowledge_alert(
    request: Request,
    patient_id: PatientId,
    alert_id: AlertId,
    principal: Caller,
    decision: PathPatientWrite,
) -> AlertOut:
    """The clinician has seen the alert and is acting: it stays open, no longer calling, until
    it resolves or its severity rises."""
    by = safe_id(principal.subject)
    return await _act(request, patient_id, alert_id, lambda a, now: acknowledge(a, by, now))


@router.post(
    PATIENT_ALERTS + "/{alert_id}/snooze",
    responses={**ACTION_RESPONSES, 400: error("a body FastAPI cannot parse")},
)
@access(PatientData("vital-signs"))
async def snooze_alert(
    request: Request,
    patient_id: PatientId,
    alert_id: AlertId,
    body: SnoozeIn,
    principal: Caller,
    decision: PathPatientWrite,
) -> AlertOut:
    """Silence the alert for ``minutes`` (at most the limit); a condition still true when the
    snooze ends raises it once more."""
    by = safe_id(principal.subject)
    return await _act(
        request,
        patient_id,
        alert_id,
        lambda a, now: snooze(a, by, now + body.minutes * MINUTE_MS, now),
    )
