"""The ward summary the ward page draws: every visible patient's NEWS2 and vitals, by acuity.

``GET /api/v1/ward``: the listing gate (``VisiblePatients``) decides which patients the caller
may see and records that in the access trail before anything is read out; it reads the store's
latest values of every patient once. Each visible patient is then scored (``clinical.news2``
with the configured stale limits, as ``/news2`` scores one) with the documented values of all
patients read in one query, on the read pool. Patients come sorted as a charge nurse reads a
ward: the highest NEWS2 tier first, then the highest total, then the one whose oldest stale
vital is oldest (a quiet device hides a deterioration), then by id.

The page asks for this every few seconds for a whole ward, so the answer is lean: a patient's
NEWS2 names each parameter's points (``/news2`` has the values behind them), and the clinical
response of each tier is given once in ``tiers``, not with every patient. It is built as plain
data and serialized once; the models below describe it (OpenAPI, schemathesis' checks) without
validating 200 patients' worth of it on every call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from clinical.documented import Kind, Record, latest_of
from clinical.news2 import MEASURED_LOINC, RESPONSES, News2, Parameter, Tier, score
from dashboards.access_deps import VisiblePatients
from dashboards.reads import Readers, read_pool
from dashboards.route_rules import PatientData, access
from dashboards.schemas import VitalValue
from devices.vitals import BY_CODE, DIASTOLIC_BP
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


class WardSubScore(BaseModel):
    parameter: Parameter
    points: int


class WardNews2(BaseModel):
    """NEWS2 now; ``partial`` when a parameter is missing or stale: then the total and tier
    are the least the patient could score, never normal by assumption."""

    total: int
    partial: bool
    red_flag: bool = Field(description="a single parameter scores 3")
    spo2_scale: int
    tier: Tier = Field(description="its clinical response: the summary's `tiers`")
    rank: int = Field(description="the tier's order, 0 routine to 4 high")
    sub_scores: list[WardSubScore]
    missing: list[Parameter]
    stale: list[Parameter] = Field(description="recorded, but older than their limits")


class WardDocumented(BaseModel):
    kind: Kind
    value: bool | int | str = Field(description="ACVPU letter, oxygen true/false, scale 1 or 2")
    oxygen_flow_l_min: float | None = Field(description="with oxygen: its flow, when documented")
    time_ms: int
    by: str


class WardPatient(BaseModel):
    patient_id: str
    news2: WardNews2
    vitals: list[WardVital]
    documented: list[WardDocumented] = Field(description="the latest of each kind NEWS2 uses")
    oldest_stale_age_s: float | None = Field(description="the age of its oldest stale vital")


class TierResponse(BaseModel):
    clinical_risk: str
    response: str
    monitoring: str
    max_minutes_between_observations: int | None
    action: str


class Ward(BaseModel):
    time_ms: int = Field(description="when it was scored, ms since the Unix epoch")
    tiers: dict[Tier, TierResponse] = Field(description="each tier's clinical response (RCP)")
    patients: list[WardPatient] = Field(description="highest tier, total, staleness first")


TIERS: dict[str, dict[str, Any]] = {
    tier.value: {
        "clinical_risk": r.clinical_risk,
        "response": r.response,
        "monitoring": r.monitoring,
        "max_minutes_between_observations": r.max_minutes_between_observations,
        "action": r.action,
    }
    for tier, r in RESPONSES.items()
}
"""Each tier's clinical response (RCP charts 3 and 4), sent once per summary."""


def stale_after_ms(code: str, max_age_ms: Mapping[Parameter, int]) -> int:
    """A vital's age limit: its NEWS2 parameter's, or the longest a measured one has."""
    parameter = PARAMETER_OF.get(code)
    if parameter is not None and parameter in max_age_ms:
        return max_age_ms[parameter]
    return max(max_age_ms.get(p, 0) for p in MEASURED_LOINC)


def _vital(v: LatestVital, now_ms: int, max_age_ms: Mapping[Parameter, int]) -> dict[str, Any]:
    limit, age = stale_after_ms(v.code, max_age_ms), max(0, now_ms - v.time_ms)
    known = BY_CODE.get(v.code)
    return {
        "code": v.code,
        "name": known.name if known else v.code,
        "unit": v.unit,
        "value": v.value,
        "time_ms": v.time_ms,
        "entry_index": v.entry_index,
        "age_s": round(age / 1000, 1),
        "stale": age > limit,  # exactly at the limit is current, as NEWS2 has it
        "stale_after_s": limit / 1000,
    }


def _news2(news: News2) -> dict[str, Any]:
    r = news.response
    return {
        "total": news.total,
        "partial": news.partial,
        "red_flag": news.red_flag,
        "spo2_scale": int(news.spo2_scale),
        "tier": r.tier.value,
        "rank": r.rank,
        "sub_scores": [
            {"parameter": s.parameter.value, "points": s.points} for s in news.sub_scores
        ],
        "missing": [p.value for p in news.missing],
        "stale": [s.parameter.value for s in news.stale],
    }


def _documented(record: Record) -> dict[str, Any]:
    o = record.observation
    return {
        "kind": o.kind.value,
        "value": o.value,
        "oxygen_flow_l_min": o.flow_l_min,
        "time_ms": record.time_ms,
        "by": record.by,
    }


def _order(p: dict[str, Any]) -> tuple[int, int, float, str]:
    news = p["news2"]
    return (-news["rank"], -news["total"], -(p["oldest_stale_age_s"] or 0.0), p["patient_id"])


def summary(
    latest: Iterable[LatestVital],
    documented: Mapping[str, Mapping[Kind, Record]],
    now_ms: int,
    max_age_ms: Mapping[Parameter, int],
) -> bytes:
    """The summary's JSON: each patient in ``latest`` scored at ``now_ms``, most acute first."""
    by_patient: dict[str, dict[str, LatestVital]] = {}
    for v in latest:
        by_patient.setdefault(v.patient_id, {})[v.code] = v
    patients = []
    for patient_id, vitals in by_patient.items():
        records = documented.get(patient_id, {})
        news = score(latest_of(records).with_vitals(vitals), now_ms=now_ms, max_age_ms=max_age_ms)
        shown = [_vital(v, now_ms, max_age_ms) for v in vitals.values()]
        stale_ages = [v["age_s"] for v in shown if v["stale"]]
        patients.append(
            {
                "patient_id": patient_id,
                "news2": _news2(news),
                "vitals": shown,
                "documented": [_documented(records[k]) for k in Kind if k in records],
                "oldest_stale_age_s": max(stale_ages, default=None),
            }
        )
    patients.sort(key=_order)
    answer = {"time_ms": now_ms, "tiers": TIERS, "patients": patients}
    return json.dumps(answer, separators=(",", ":"), allow_nan=False).encode()


@router.get("/api/v1/ward", response_class=Response, responses={200: {"model": Ward}})
@access(PatientData("vital-signs"))
async def ward(request: Request, listing: VisiblePatients) -> Response:
    """Every patient the caller may see with NEWS2 now, each vital's age and staleness and
    the documented values, the most acute first."""
    max_age: Mapping[Parameter, int] = request.app.state.news2_max_age_ms

    def read(r: Readers) -> bytes:
        shown = {v.patient_id for v in listing.latest}
        documented = r.documented.latest_records_of(shown) if shown else {}
        return summary(listing.latest, documented, int(time.time() * 1000), max_age)

    return Response(await read_pool(request).run(read), media_type="application/json")
