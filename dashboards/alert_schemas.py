"""The JSON of alerts, their history, and a snooze."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from clinical.alerts import Alert, Category, Event, EventKind, Kind, State, rank
from clinical.news2 import Tier


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded here only so that no number is too big to compute with; the limit is the
    # engine's (clinical.alerts.MAX_SNOOZE_MS), refused as bad-snooze.
    minutes: StrictInt = Field(ge=-(10**6), le=10**6, description="how long, at most 240")


class AlertOut(BaseModel):
    id: str
    patient_id: str
    kind: Kind
    category: Category
    parameter: str = Field(description="the NEWS2 parameter (extreme, stale), or empty")
    severity: Tier
    state: State
    message: str
    raised_ms: int = Field(description="when this alert was first raised, ms since the epoch")
    updated_ms: int
    acknowledged_by: str | None
    acknowledged_ms: int | None
    snoozed_by: str | None
    snoozed_until_ms: int | None
    resolved_ms: int | None

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        return cls(
            id=a.id,
            patient_id=a.key.patient_id,
            kind=a.key.kind,
            category=a.category,
            parameter=a.key.parameter,
            severity=a.severity,
            state=a.state,
            message=a.message,
            raised_ms=a.raised_ms,
            updated_ms=a.updated_ms,
            acknowledged_by=a.acknowledged_by,
            acknowledged_ms=a.acknowledged_ms,
            snoozed_by=a.snoozed_by,
            snoozed_until_ms=a.snoozed_until_ms,
            resolved_ms=a.resolved_ms,
        )

    @staticmethod
    def order(a: Alert) -> tuple[int, int, str]:
        """Most severe first, then the oldest."""
        return (-rank(a.severity), a.raised_ms, a.id)


class EventOut(BaseModel):
    event: EventKind
    time_ms: int
    by: str | None = Field(description="who acknowledged or snoozed; null: the engine")
    alert: AlertOut = Field(description="the alert as this change left it")

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(event=e.kind, time_ms=e.time_ms, by=e.by, alert=AlertOut.of(e.alert))


class PatientAlerts(BaseModel):
    patient_id: str
    open: list[AlertOut] = Field(description="the open alerts, most severe first")
    history: list[EventOut] = Field(description="changes to any alert, newest first (500)")
