"""The ward summary the ward page draws: every visible patient's NEWS2 and vitals, by acuity.

``GET /api/v1/ward``: the listing gate (``VisiblePatients``) decides which patients the caller
may see and records that in the access trail before anything is read out; it reads the store's
latest values of every patient once. Each visible patient is then scored (``clinical.news2``
with the configured stale limits, as ``/news2`` scores one) with the documented values of all
patients read in one query, on the read pool. Patients come sorted as a charge nurse reads a
ward: the highest NEWS2 tier first, then the highest total, then the one whose oldest stale
vital is oldest (a quiet device hides a deterioration), then by id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from clinical.documented import Kind, latest_of
from clinical.news2 import MEASURED_LOINC, Observations, Parameter, score
from dashboards.access_deps import VisiblePatients
from dashboards.documented_schemas import DocumentedOut, News2Out
from dashboards.reads import Readers, read_pool
from dashboards.route_rules import PatientData, access
from dashboards.schemas import VitalValue
from devices.vitals import DIASTOLIC_BP
from ingest.store import LatestVital

router = APIRouter(tags=["dashboard"])

PARAMETER_OF: Mapping[str, Parameter] = {
    **{code: parameter for parameter, code in MEASURED_LOINC.items()},
    DIASTOLIC_BP.code: Parameter.SYSTOLIC_BP,  # the same cuff, the same age
}
"""The NEWS2 parameter whose age limit a vital's reading shares."""


class WardVital(VitalValue):
    age_s: float = Field(description="seconds since it was measured, at the summary's time")
    stale: bool = Field(description="older than its limit: greyed, and not scored")
    stale_after_s: float


class WardPatient(BaseModel):
    patient_id: str
    news2: News2Out
    vitals: list[WardVital]
    documented: list[DocumentedOut] = Field(description="the latest of each kind NEWS2 uses")
    oldest_stale_age_s: float | None = Field(description="the age of its oldest stale vital")


class Ward(BaseModel):
    time_ms: int = Field(description="when it was scored, ms since the Unix epoch")
    patients: list[WardPatient] = Field(description="highest tier, total, staleness first")


def stale_after_ms(code: str, max_age_ms: Mapping[Parameter, int]) -> int:
    """A vital's age limit: its NEWS2 parameter's, or the longest a measured one has."""
    parameter = PARAMETER_OF.get(code)
    if parameter is not None and parameter in max_age_ms:
        return max_age_ms[parameter]
    return max(max_age_ms.get(p, 0) for p in MEASURED_LOINC)


def _vital(v: LatestVital, now_ms: int, max_age_ms: Mapping[Parameter, int]) -> WardVital:
    limit, age = stale_after_ms(v.code, max_age_ms), max(0, now_ms - v.time_ms)
    return WardVital(
        **VitalValue.of(v).model_dump(),
        age_s=age / 1000,
        stale=age > limit,  # exactly at the limit is current, as NEWS2 has it
        stale_after_s=limit / 1000,
    )


def _order(p: WardPatient) -> tuple[int, int, float, str]:
    return (-p.news2.rank, -p.news2.total, -(p.oldest_stale_age_s or 0.0), p.patient_id)


@router.get("/api/v1/ward")
@access(PatientData("vital-signs"))
async def ward(request: Request, listing: VisiblePatients) -> Ward:
    """Every patient the caller may see with NEWS2 now, each vital's age and staleness and
    the documented values, the most acute first."""
    max_age: Mapping[Parameter, int] = request.app.state.news2_max_age_ms
    by_patient: dict[str, dict[str, LatestVital]] = {}
    for v in listing.latest:
        by_patient.setdefault(v.patient_id, {})[v.code] = v

    def read(r: Readers) -> Ward:
        documented = r.documented.latest_records_of_all() if by_patient else {}
        now = int(time.time() * 1000)
        patients = []
        for patient_id, vitals in by_patient.items():
            records = documented.get(patient_id, {})
            latest = latest_of(records)
            news = score(
                Observations(vitals, latest.consciousness, latest.air_or_oxygen, latest.spo2_scale),
                now_ms=now,
                max_age_ms=max_age,
            )
            shown = [_vital(v, now, max_age) for v in vitals.values()]
            stale_ages = [v.age_s for v in shown if v.stale]
            patients.append(
                WardPatient(
                    patient_id=patient_id,
                    news2=News2Out.of(patient_id, now, news),
                    vitals=shown,
                    documented=[DocumentedOut.of(records[k]) for k in Kind if k in records],
                    oldest_stale_age_s=max(stale_ages, default=None),
                )
            )
        return Ward(time_ms=now, patients=sorted(patients, key=_order))

    return await read_pool(request).run(read)
