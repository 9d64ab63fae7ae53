"""A patient's own access log: who read their data, when, why, the outcome, break-glass.

Read from the access trail (every decision, permitted or refused, is there before any data
left), as JSON for the patient's page or as FHIR AuditEvents (IHE Basic Audit Log Patterns,
``access.fhir``). Reading the log is itself patient data: it is decided (only the patient;
no consent grants it, and clinicians' scopes do not delegate AuditEvent) and recorded first,
so the patient sees their own look too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from access.fhir import audit_event
from access.policy import Decision
from access.trail import AccessEvent
from dashboards.access_deps import OwnRecord, PathPatient, PatientId
from dashboards.reads import read_pool
from dashboards.route_rules import PatientData, access

router = APIRouter(tags=["patient"])


class AccessLogEntry(BaseModel):
    seq: int = Field(description="the access trail's sequence number")
    time_ms: int
    who: str = Field(description="the user name, or the app's client id")
    kind: str = Field(description="user or app")
    role: str
    client: str | None = Field(description="the app a user came through")
    purpose: list[str]
    data: list[str]
    outcome: str = Field(description="permit or deny")
    reason: str = Field(description="care-team, self, consent, break-glass, or why refused")
    break_glass: str | None = Field(description="the reason a clinician gave to break the glass")
    route: str


def log_entry(event: AccessEvent) -> AccessLogEntry:
    """One access as the patient's page reads it."""
    a = event.access
    return AccessLogEntry(
        seq=event.seq,
        time_ms=a.time_ms,
        who=a.agent.id,
        kind=a.agent.kind,
        role=a.agent.role,
        client=a.agent.client,
        purpose=list(a.purpose),
        data=list(a.data),
        outcome=a.outcome,
        reason=a.reason,
        break_glass=a.break_glass,
        route=a.route,
    )


async def _events(request: Request, decision: Decision) -> list[AccessEvent]:
    (patient,) = decision.patients
    trail = request.app.state.access.trail
    events: list[AccessEvent] = await read_pool(request).run(lambda _: trail.for_patient(patient))
    return events


@router.get("/api/v1/me/access-log")
@access(PatientData("access-log"))
async def my_access_log(request: Request, decision: OwnRecord) -> list[AccessLogEntry]:
    """Who read my data (a patient's own token), oldest first."""
    return [log_entry(e) for e in await _events(request, decision)]


@router.get("/api/v1/patients/{patient_id}/access-log")
@access(PatientData("access-log"))
async def access_log(
    patient_id: PatientId, request: Request, decision: PathPatient
) -> list[AccessLogEntry]:
    """Who read this patient's data: for the patient themself."""
    return [log_entry(e) for e in await _events(request, decision)]


@router.get("/api/v1/patients/{patient_id}/access-log/fhir")
@access(PatientData("access-log"))
async def access_log_fhir(
    patient_id: PatientId, request: Request, decision: PathPatient
) -> dict[str, Any]:
    """The same log as a FHIR R4 Bundle of AuditEvents."""
    events = await _events(request, decision)
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(events),
        "entry": [{"resource": audit_event(e)} for e in events],
    }
