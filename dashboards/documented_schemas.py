"""The JSON of what staff document for NEWS2, and of a patient's NEWS2 score.

The body's shape is checked here (types, lengths); its values by ``clinical.documented``, so
the rules live in one place and a bad value is a 422 naming its reason code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from clinical.documented import MAX_FLOW_L_MIN, MAX_TEXT, Kind, Observation, Record
from clinical.news2 import News2


class DocumentedIn(BaseModel):
    """What a clinician documents, any of the three at once; each becomes a record."""

    model_config = ConfigDict(extra="forbid")

    consciousness: Literal["A", "C", "V", "P", "U"] | None = Field(
        None, description="ACVPU: A, C (new confusion), V, P or U"
    )
    oxygen: StrictBool | None = Field(None, description="true: supplemental oxygen; false: air")
    oxygen_flow_l_min: float | None = Field(
        None, gt=0, le=MAX_FLOW_L_MIN, description="with oxygen: its flow, L/min"
    )
    oxygen_device: str | None = Field(None, max_length=MAX_TEXT, description="with oxygen")
    spo2_scale: Literal[1, 2] | None = Field(
        None, description="1, or 2 for a clinician's hypercapnic target of 88-92 %"
    )
    note: str | None = Field(None, max_length=MAX_TEXT, description="kept with each record")

    def observations(self) -> tuple[Observation, ...]:
        """The records to append (``clinical.documented.DocumentedError`` if a value is not
        valid); field names as the 422 names them."""
        found: list[Observation] = []
        if self.consciousness is not None:
            found.append(Observation(Kind.CONSCIOUSNESS, self.consciousness, note=self.note))
        if any(v is not None for v in (self.oxygen, self.oxygen_flow_l_min, self.oxygen_device)):
            found.append(
                Observation(
                    Kind.AIR_OR_OXYGEN,
                    bool(self.oxygen),
                    self.oxygen_flow_l_min,
                    self.oxygen_device,
                    self.note,
                )
            )
        if self.spo2_scale is not None:
            found.append(Observation(Kind.SPO2_SCALE, self.spo2_scale, note=self.note))
        return tuple(found)


class DocumentedOut(BaseModel):
    seq: int
    kind: Kind
    value: StrictBool | StrictInt | str  # ACVPU letter, oxygen true/false, scale 1 or 2
    oxygen_flow_l_min: float | None
    oxygen_device: str | None
    note: str | None
    by: str = Field(description="the user who documented it (the token's sub)")
    role: str
    time_ms: int = Field(description="when it was documented, ms since the Unix epoch")

    @classmethod
    def of(cls, record: Record) -> DocumentedOut:
        o = record.observation
        return cls(
            seq=record.seq,
            kind=o.kind,
            value=o.value,
            oxygen_flow_l_min=o.flow_l_min,
            oxygen_device=o.device,
            note=o.note,
            by=record.by,
            role=record.role,
            time_ms=record.time_ms,
        )


class PatientDocumented(BaseModel):
    patient_id: str
    latest: list[DocumentedOut] = Field(description="the latest of each kind: what NEWS2 uses")
    history: list[DocumentedOut] = Field(description="every record, newest first (at most 500)")


class SubScoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    parameter: str
    points: int
    value: float | str
    time_ms: int
    documented_by: str | None
    lower_bound: bool


class StaleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    parameter: str
    value: float | str
    time_ms: int
    age_ms: int
    max_age_ms: int


class News2Out(BaseModel):
    """NEWS2 now; ``partial`` when a parameter is missing or stale: then the total and tier
    are the least the patient could score, never normal by assumption."""

    patient_id: str
    time_ms: int
    total: int
    partial: bool
    red_flag: bool
    spo2_scale: int
    tier: str
    rank: int
    clinical_risk: str
    response: str
    monitoring: str
    max_minutes_between_observations: int | None
    action: str
    sub_scores: list[SubScoreOut]
    missing: list[str]
    stale: list[StaleOut]

    @classmethod
    def of(cls, patient_id: str, time_ms: int, news: News2) -> News2Out:
        r = news.response
        return cls(
            patient_id=patient_id,
            time_ms=time_ms,
            total=news.total,
            partial=news.partial,
            red_flag=news.red_flag,
            spo2_scale=int(news.spo2_scale),
            tier=r.tier,
            rank=r.rank,
            clinical_risk=r.clinical_risk,
            response=r.response,
            monitoring=r.monitoring,
            max_minutes_between_observations=r.max_minutes_between_observations,
            action=r.action,
            sub_scores=[SubScoreOut.model_validate(s) for s in news.sub_scores],
            missing=[p.value for p in news.missing],
            stale=[StaleOut.model_validate(s) for s in news.stale],
        )
