"""A ward: patients, the devices they wear, and when each device samples what.

Device kinds and their sampling: a wristband (heart rate and SpO2 every second,
respiratory rate every 4 s, temperature every minute), a blood-pressure cuff (every 15
minutes) and, for diabetic patients, a continuous glucose monitor (every 5 minutes). Faults:
a device may go offline for a while (its readings queue on the device and are replayed),
and a wristband may produce motion artefacts (a heart-rate spike that is still plausible).
A device may also measure nothing for a while (the patient is off the ward) or from some time
on (it went silent): nothing is queued, so nothing is replayed; the gap is real. Every device
reports its battery, which drains slowly (a wristband lasts about two days), or fast while a
``battery-drain`` scenario runs it down.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from devices.reading import Sample
from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    GLUCOSE,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    Vital,
)
from simulator.physiology import PatientProfile, VirtualPatient

KINDS: dict[str, tuple[tuple[Vital, float], ...]] = {
    "band": ((HEART_RATE, 1), (SPO2, 1), (RESPIRATORY_RATE, 4), (BODY_TEMPERATURE, 60)),
    "cuff": ((SYSTOLIC_BP, 900), (DIASTOLIC_BP, 900)),
    "cgm": ((GLUCOSE, 300),),
}


BATTERY_DRAIN_PCT_PER_H = 2.0  # slow enough that a demo's devices stay well charged


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    patient_id: str
    kind: str
    phase_s: float  # the first sample comes this long after the start
    offline: tuple[tuple[float, float], ...]  # (start_s, end_s) windows without a connection
    # (start_s, end_s) windows in which it measures nothing; end_s math.inf: silent for good
    unmeasured: tuple[tuple[float, float], ...] = ()
    # (start_s, end_s, to_pct): from start_s the battery falls steadily to to_pct by end_s
    drain: tuple[float, float, float] | None = None

    def battery_pct(self, t_s: float) -> int:
        """The charge the device reports at ``t_s``: a start from its id (so the ward's random
        draws stay as they were), minus the slow drain, or the scenario's fast one."""
        start = 60 + zlib.crc32(self.device_id.encode()) % 41
        level = start - BATTERY_DRAIN_PCT_PER_H * t_s / 3600
        if self.drain is not None and t_s > self.drain[0]:
            begin, end, to_pct = self.drain
            at_begin = start - BATTERY_DRAIN_PCT_PER_H * begin / 3600
            share = min(1.0, (t_s - begin) / (end - begin)) if end > begin else 1.0
            level = min(level, at_begin + (to_pct - at_begin) * share)
        return max(0, min(100, math.floor(level)))

    def is_offline(self, t_s: float) -> bool:
        return any(start <= t_s < end for start, end in self.offline)

    def measures(self, t_s: float) -> bool:
        return not any(start <= t_s < end for start, end in self.unmeasured)

    def resumes_at(self, t_s: float) -> float:
        """When a device that measures nothing at ``t_s`` measures again (math.inf: never)."""
        return max((end for start, end in self.unmeasured if start <= t_s < end), default=t_s)


@dataclass
class Ward:
    seed: int
    patients: dict[str, VirtualPatient]
    devices: list[SimDevice]

    @staticmethod
    def _ticks(i: int, device: SimDevice, duration_s: float) -> Iterator[tuple[float, int]]:
        period = min(p for _, p in KINDS[device.kind])
        k = 0
        while (t := device.phase_s + k * period) < duration_s:
            if device.measures(t):
                yield t, i
                k += 1
            elif (resume := device.resumes_at(t)) == math.inf:
                return
            else:  # the next tick on the device's own grid, so its sampling stays in phase
                k = max(k + 1, math.ceil((resume - device.phase_s) / period - 1e-9))

    def schedule(
        self, start_ms: int, duration_s: float
    ) -> Iterator[tuple[float, SimDevice, list[Sample]]]:
        """Every reading of the run, in time order: (seconds since start, device, samples)."""
        rng = random.Random(self.seed ^ 0x5EED)
        streams = [self._ticks(i, device, duration_s) for i, device in enumerate(self.devices)]
        for t, i in heapq.merge(*streams):  # lazy: a run may last for years
            device = self.devices[i]
            patient = self.patients[device.patient_id]
            elapsed = round(t - device.phase_s, 6)
            samples = []
            for vital, period in KINDS[device.kind]:
                if elapsed % period < 1e-6 or elapsed == 0:
                    value = patient.value(vital, t)
                    if vital is HEART_RATE and rng.random() < 0.002:  # motion artefact
                        value = min(vital.high, value + rng.uniform(40, 80))
                    samples.append(Sample(vital.code, vital.unit, value, start_ms + int(t * 1000)))
            if samples:
                yield t, device, samples


SIMULATED_WARD = "sim"  # `vitaltrail simulate`'s ward: ids and keys apart from the demo's


def build_ward(devices: int, seed: int = 1, *, offline_rate: float = 0.0, name: str = "") -> Ward:
    """A ward with ``devices`` devices: each patient gets a band, then a cuff, then a CGM if diabetic.

    ``offline_rate`` is the chance that a device has one outage (10-30 s) in the first minute.
    ``name`` prefixes every patient and device id, so two simulated wards never share a device
    (the demo's ward has none; ``vitaltrail simulate`` uses :data:`SIMULATED_WARD`).
    """
    rng = random.Random(seed)
    patients: dict[str, VirtualPatient] = {}
    fleet: list[SimDevice] = []
    n = 0
    while len(fleet) < devices:
        n += 1
        patient_id = f"{name}-patient-{n:03d}" if name else f"patient-{n:03d}"
        profile = PatientProfile.random(patient_id, rng)
        patients[patient_id] = VirtualPatient(profile, rng.randrange(2**32))
        kinds = ["band", "cuff"] + (["cgm"] if profile.diabetic else [])
        for kind in kinds[: devices - len(fleet)]:
            offline: tuple[tuple[float, float], ...] = ()
            if rng.random() < offline_rate:
                start = rng.uniform(2, 60)
                offline = ((start, start + rng.uniform(10, 30)),)
            phase = 0.0 if kind == "band" else rng.uniform(0, 5)
            fleet.append(SimDevice(f"{patient_id}-{kind}", patient_id, kind, phase, offline))
    return Ward(seed, patients, fleet)
