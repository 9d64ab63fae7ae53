"""``GET /api/v1/patients/{patient_id}/devices``: the devices bound to a patient, and how each is.

For the clinician's patient page: each device's key (active or revoked, its thumbprint), when
it last sent a message that verified, its latest battery level, and messages claiming it whose
signature failed (``ingest.device_status``), with the technical alert limits already applied
(``silent``, ``battery_low``), so the page shows what the alert engine acts on. Read by whoever
may read the patient's vital signs, through the path-patient gate (the read is in the access
trail before anything is read). 404 when no device was ever registered to the patient.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from clinical.alert_engine import device_state
from clinical.alerts import DeviceLimits
from dashboards.access_deps import PathPatient, PatientId
from dashboards.reads import Readers, read_pool
from dashboards.refusals import error
from dashboards.route_rules import PatientData, access
from devices.registry import DeviceRecord
from ingest.device_status import DeviceStatus

router = APIRouter(tags=["clinical"])


class DeviceOut(BaseModel):
    device_id: str
    key_status: str = Field(description="active, or revoked (its readings are refused)")
    key_thumbprint: str = Field(description="the key's RFC 9679 thumbprint (the COSE kid), hex")
    registered_ms: int | None
    last_seen_ms: int | None = Field(description="the last message from it that verified")
    battery_pct: int | None = Field(description="the latest charge it reported, signed")
    battery_time_ms: int | None
    signature_failures: int = Field(description="messages claiming it whose signature failed")
    last_failure_ms: int | None
    last_failure_reason: str | None = Field(description="the ingest reason code")
    usual_interval_ms: int | None = Field(description="how often it reports; null: not known")
    silent_after_ms: int = Field(description="its silent limit: missed reports, 2 min at least")
    silent: bool = Field(description="no verified message for its silent limit")
    battery_low: bool = Field(description="the battery at or below the low limit")

    @classmethod
    def of(
        cls, record: DeviceRecord, status: DeviceStatus | None, now_ms: int, limits: DeviceLimits
    ) -> DeviceOut:
        seen = status.last_seen_ms if status else None
        state = device_state(record.registered_at_ms, status)
        quiet_for = limits.silent_after_ms(state)
        battery = status.battery_pct if status else None
        active = not record.revoked
        return cls(
            device_id=record.device_id,
            key_status="revoked" if record.revoked else "active",
            key_thumbprint=record.key.kid.hex(),
            registered_ms=record.registered_at_ms,
            last_seen_ms=seen,
            battery_pct=battery,
            battery_time_ms=status.battery_time_ms if status else None,
            signature_failures=status.signature_failures if status else 0,
            last_failure_ms=status.last_failure_ms if status else None,
            last_failure_reason=status.last_failure_reason if status else None,
            usual_interval_ms=state.usual_interval_ms,
            silent_after_ms=quiet_for,
            silent=active and now_ms - state.last_message_ms > quiet_for,
            battery_low=active and battery is not None and battery <= limits.battery_low_pct,
        )


class PatientDevices(BaseModel):
    patient_id: str
    devices: list[DeviceOut]


@router.get(
    "/api/v1/patients/{patient_id}/devices",
    responses={404: error("no device was ever registered to this patient")},
)
@access(PatientData("vital-signs"))
async def patient_devices(
    request: Request, patient_id: PatientId, decision: PathPatient
) -> PatientDevices:
    """The patient's devices, active and revoked, with their technical state."""
    limits: DeviceLimits = request.app.state.device_limits
    now = request.app.state.clock_ms()

    def read(r: Readers) -> list[DeviceOut]:
        records = [d for d in r.registry.all() if d.patient_id == patient_id]
        statuses = r.device_status.statuses(
            now, limits.signature_window_ms, [d.device_id for d in records]
        )
        return [DeviceOut.of(d, statuses.get(d.device_id), now, limits) for d in records]

    devices = await read_pool(request).run(read)
    if not devices:
        raise HTTPException(404, f"no devices registered to patient {patient_id}")
    return PatientDevices(patient_id=patient_id, devices=devices)
