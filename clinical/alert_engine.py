"""One round of the alert engine: every patient with data evaluated at one instant.

``clinical.alerts`` decides for one patient; this gathers the ward in one read of the latest
values (one query, not one per patient) and each patient's documented values, moves the open
alerts by what holds now, and saves the changes. A round runs with no new data as well as with
it: a vital that stops arriving raises its stale alert on the clock alone.

Technical alerts come from each device's state as the ingestor keeps it
(``ingest.device_status``) and the registry's map of active devices to patients: a patient with
a device and no vitals yet is evaluated too (a band that never sent anything is silent).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from clinical.alert_store import AlertStore
from clinical.alerts import AlertConfig, DeviceState, Event, PatientState, apply, evaluate
from clinical.documented import DocumentedStore, latest_of
from clinical.news2 import Timed
from devices.registry import DeviceRecord
from ingest.device_status import DeviceStatus


class LatestValue(Timed, Protocol):
    """A patient's latest value of one vital (``ingest.store.LatestVital`` is one)."""

    @property
    def patient_id(self) -> str: ...

    @property
    def code(self) -> str: ...


@dataclass(frozen=True)
class WardDevice:
    """An active device of the registry (``devices.registry.DeviceRecord`` gives these)."""

    device_id: str
    patient_id: str
    registered_ms: int


def active_devices(records: Iterable[DeviceRecord]) -> list[WardDevice]:
    """The registry's devices that are not revoked, each with its patient."""
    return [
        WardDevice(r.device_id, r.patient_id, r.registered_at_ms) for r in records if not r.revoked
    ]


WRITING = threading.Lock()
"""Held by whatever changes the open alerts (a round, an acknowledgement, a snooze) from
reading them to saving the change, so that none of them saves over another's change."""


def evaluate_ward(
    latest: Iterable[LatestValue],
    documented: DocumentedStore,
    alerts: AlertStore,
    now_ms: int,
    config: AlertConfig,
    *,
    devices: Iterable[WardDevice] = (),
    statuses: Mapping[str, DeviceStatus] | None = None,
) -> list[Event]:
    """Evaluate every patient in ``latest`` or with a device in ``devices`` at ``now_ms``,
    save and return the events. ``statuses`` are the devices' states by id, with failures
    counted over ``config.devices.signature_window_ms``. Open alerts of patients with neither
    are left as they are."""
    vitals: dict[str, dict[str, Timed]] = {}
    for value in latest:
        vitals.setdefault(value.patient_id, {})[value.code] = value
    worn: dict[str, dict[str, DeviceState]] = {}
    for device in devices:
        status = (statuses or {}).get(device.device_id)
        worn.setdefault(device.patient_id, {})[device.device_id] = device_state(
            device.registered_ms, status
        )
    conditions = []
    patients = sorted(vitals.keys() | worn.keys())
    marks = documented.latest_records_of(patients) if patients else {}  # one query, not three each
    for patient_id in patients:
        observations = latest_of(marks.get(patient_id, {})).with_vitals(vitals.get(patient_id, {}))
        state = PatientState(patient_id, observations, worn.get(patient_id, {}))
        conditions.extend(evaluate(state, now_ms, config))
    with WRITING:
        _, events = apply(alerts.current(), conditions, now_ms, patients=vitals.keys() | worn)
        alerts.save(events)
    return events


def device_state(registered_ms: int, status: DeviceStatus | None) -> DeviceState:
    """What the alerts judge of a device (the device route shows the same): one never heard
    from is quiet since it was registered."""
    if status is None:
        return DeviceState(registered_ms)
    seen = status.last_seen_ms
    return DeviceState(
        registered_ms if seen is None else max(seen, registered_ms),
        status.recent_failures,
        status.battery_pct,
        status.usual_gap_ms,
    )
