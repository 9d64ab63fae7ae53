"""One round of the alert engine: every patient with data evaluated at one instant.

``clinical.alerts`` decides for one patient; this gathers the ward in one read of the latest
values (one query, not one per patient) and each patient's documented values, moves the open
alerts by what holds now, and saves the changes. A round runs with no new data as well as with
it: a vital that stops arriving raises its stale alert on the clock alone.

Device-silent and signature-failure alerts need each device's last message and failure count;
neither the store nor the registry keeps them yet, so a round raises clinical alerts only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from clinical.alert_store import AlertStore
from clinical.alerts import AlertConfig, Event, PatientState, apply, evaluate
from clinical.documented import DocumentedStore
from clinical.news2 import Observations, Timed


class LatestValue(Timed, Protocol):
    """A patient's latest value of one vital (``ingest.store.LatestVital`` is one)."""

    @property
    def patient_id(self) -> str: ...

    @property
    def code(self) -> str: ...


WRITING = threading.Lock()
"""Held by whatever changes the open alerts (a round, an acknowledgement, a snooze) from
reading them to saving the change, so that none of them saves over another's change."""


def evaluate_ward(
    latest: Iterable[LatestValue],
    documented: DocumentedStore,
    alerts: AlertStore,
    now_ms: int,
    config: AlertConfig,
) -> list[Event]:
    """Evaluate every patient in ``latest`` at ``now_ms``, save and return the events. Open
    alerts of patients with no values in ``latest`` are left as they are."""
    vitals: dict[str, dict[str, Timed]] = {}
    for value in latest:
        vitals.setdefault(value.patient_id, {})[value.code] = value
    conditions = []
    for patient_id, by_code in sorted(vitals.items()):
        d = documented.latest(patient_id)
        observations = Observations(by_code, d.consciousness, d.air_or_oxygen, d.spo2_scale)
        conditions.extend(evaluate(PatientState(patient_id, observations), now_ms, config))
    with WRITING:
        _, events = apply(alerts.current(), conditions, now_ms, patients=vitals)
        alerts.save(events)
    return events
