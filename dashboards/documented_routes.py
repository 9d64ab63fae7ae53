"""What staff document for NEWS2 (consciousness, air or oxygen, the SpO2 scale), and the score.

``POST /api/v1/patients/{patient_id}/documented``: a clinician of the patient's care team (or
one who breaks the glass) documents; patients, apps and admins may not (the access policy's
``may-not-write`` or ``admin-reads-no-patient-data``). The decision, a ``create``, is in the
access trail before anything is written. ``GET`` of the same path (the history and the latest
of each kind) and ``GET .../news2`` (clinical.news2 of the latest vitals and the documented
values, with the configured stale limits) are read by whoever may read the patient's vital
signs. A browser session's POST carries its CSRF token (dashboards.session).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from fastapi import APIRouter, Request

from access.policy import safe_id
from clinical.documented import DocumentedError, Kind
from clinical.news2 import Parameter, score
from dashboards.access_deps import Caller, PathPatient, PathPatientWrite, PatientId
from dashboards.documented_schemas import (
    DocumentedIn,
    DocumentedOut,
    News2Out,
    PatientDocumented,
)
from dashboards.reads import Readers, read_pool
from dashboards.refusals import invalid_body
from dashboards.route_rules import PatientData, access

router = APIRouter(tags=["clinical"])
PATH = "/api/v1/patients/{patient_id}/documented"


@router.post(PATH, status_code=201)
@access(PatientData("vital-signs"))
async def document(
    request: Request,
    patient_id: PatientId,
    body: DocumentedIn,
    principal: Caller,
    decision: PathPatientWrite,
) -> list[DocumentedOut]:
    """Append what the clinician documents (one record per kind), each naming them and now.
    A correction is a new record; nothing is changed or deleted."""
    try:
        observations = body.observations()
        if not observations:
            raise DocumentedError("nothing-documented", "document consciousness, oxygen or scale")
    except DocumentedError as exc:
        raise invalid_body(exc.reason, str(exc)) from None
    by, role, now = safe_id(principal.subject), decision.role, int(time.time() * 1000)
    records = await read_pool(request).run(
        lambda r: r.documented.record(patient_id, observations, by, role, now)
    )
    return [DocumentedOut.of(record) for record in records]


@router.get(PATH)
@access(PatientData("vital-signs"))
async def documented(
    request: Request, patient_id: PatientId, decision: PathPatient
) -> PatientDocumented:
    """The patient's documented observations: the latest of each kind, and the history."""

    def read(r: Readers) -> PatientDocumented:
        latest = r.documented.latest_records(patient_id)
        return PatientDocumented(
            patient_id=patient_id,
            latest=[DocumentedOut.of(latest[k]) for k in Kind if k in latest],
            history=[DocumentedOut.of(x) for x in r.documented.history(patient_id)],
        )

    return await read_pool(request).run(read)


@router.get("/api/v1/patients/{patient_id}/news2")
@access(PatientData("vital-signs"))
async def news2(request: Request, patient_id: PatientId, decision: PathPatient) -> News2Out:
    """NEWS2 of the patient's latest vitals and what staff documented, scored now. A
    parameter without a current value is listed as missing or stale, never scored normal."""
    max_age: Mapping[Parameter, int] = request.app.state.news2_max_age_ms

    def read(r: Readers) -> News2Out:
        vitals = {v.code: v for v in r.store.latest(patient_id) if decision.shows(v.code)}
        observations = r.documented.latest(patient_id).with_vitals(vitals)
        now = int(time.time() * 1000)
        return News2Out.of(patient_id, now, score(observations, now_ms=now, max_age_ms=max_age))

    return await read_pool(request).run(read)
