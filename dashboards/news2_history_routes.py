"""``GET /api/v1/patients/{patient_id}/news2/history?window=1h|24h|7d``: NEWS2 over time.

Through the path-patient gate (the decision is in the access trail before anything is read),
on the read pool: each measured vital's downsampled series over the window (only codes the
decision shows), the documented history, scored by ``clinical.news2_history`` with the
configured stale limits, as ``/news2`` scores now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from clinical.news2 import MEASURED_LOINC, Parameter
from clinical.news2_history import WINDOWS, news2_history
from dashboards.access_deps import PathPatient, PatientId
from dashboards.reads import Readers, read_pool
from dashboards.route_rules import PatientData, access

router = APIRouter(tags=["clinical"])


class News2Point(BaseModel):
    time_ms: int = Field(description="the end of the bucket scored, ms since the Unix epoch")
    total: int
    partial: bool
    red_flag: bool
    tier: str
    rank: int
    unscored: list[str] = Field(description="parameters missing or stale then")


class News2History(BaseModel):
    patient_id: str
    window: str
    start_ms: int
    end_ms: int
    bucket_ms: int
    points: list[News2Point] = Field(description="oldest first; a time with no vital is absent")


@router.get("/api/v1/patients/{patient_id}/news2/history")
@access(PatientData("vital-signs"))
async def news2_over_time(
    request: Request,
    patient_id: PatientId,
    decision: PathPatient,
    window: Literal["1h", "24h", "7d"] = "24h",
) -> News2History:
    """NEWS2 at the end of each bucket of the window (1 min, 15 min or 1 h), from the
    downsampled vitals and what staff had documented by then."""
    spec = WINDOWS[window]
    max_age: Mapping[Parameter, int] = request.app.state.news2_max_age_ms
    end = int(time.time() * 1000)
    start = end - spec.span_ms
    codes = [c for c in MEASURED_LOINC.values() if decision.shows(c)]

    def read(r: Readers) -> News2History:
        series = {c: r.store.series(patient_id, c, start, end, spec.bucket_ms) for c in codes}
        history = r.documented.history(patient_id)
        scored = news2_history(
            series,
            history,
            start_ms=start,
            end_ms=end,
            bucket_ms=spec.bucket_ms,
            max_age_ms=max_age,
        )
        return News2History(
            patient_id=patient_id,
            window=window,
            start_ms=start,
            end_ms=end,
            bucket_ms=spec.bucket_ms,
            points=[
                News2Point(
                    time_ms=p.time_ms,
                    total=p.news2.total,
                    partial=p.news2.partial,
                    red_flag=p.news2.red_flag,
                    tier=p.news2.response.tier,
                    rank=p.news2.response.rank,
                    unscored=[u.value for u in p.news2.unscored],
                )
                for p in scored
            ],
        )

    return await read_pool(request).run(read)
