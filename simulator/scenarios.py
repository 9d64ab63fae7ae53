"""Scenarios: named, time-shaped scripts for one patient or device, so a ward shows what a
clinician watches for.

A random ward is mostly well patients with short random events; a scenario puts one thing on it
on purpose, at a known time: a patient deteriorating (sepsis-like), an acute desaturation, atrial
fibrillation, a device that goes silent, a device whose battery runs down, a patient off the
ward. Deterministic: the same ward
seed and scenarios give the same readings. ``vitaltrail simulate --scenario NAME[:PATIENT[:START_S]]``
asks for one; the demo runs a deterioration, a desaturation and a silent device.

A patient scenario sets where each vital is heading (a value, like a respiration rate of 27,
or a change from the patient's own baseline, like +15 beats/min) and when; the patient's
physiology still drifts and is noisy around that course.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    Vital,
)
from simulator.physiology import Course, PatientProfile, Script
from simulator.ward import SimDevice, Ward

DEFAULT_START_S = 60.0

# Deterioration: when each vital leaves the patient's baseline (a share of the duration) and
# where it is heading, as (share, value). The early signs of sepsis come first - breathing,
# pulse and temperature rise - then oxygen saturation and blood pressure fall. NEWS2 climbs
# through the tiers: 1-4 (ward-based response) from about a fifth of the way, 5-6 (urgent)
# from about half, 7 or more (emergency) from about two thirds. The end scores 3 for RR 27,
# 2 for pulse 124, 2 for 39.4 °C, 3 for SpO2 90 and 3 for systolic 86.
_DETERIORATION: tuple[tuple[Vital, float, tuple[tuple[float, float], ...]], ...] = (
    (RESPIRATORY_RATE, 0.0, ((0.3, 22.5), (0.6, 23.5), (0.8, 27.0))),
    (HEART_RATE, 0.05, ((0.35, 100.0), (0.55, 118.0), (0.85, 124.0))),
    (BODY_TEMPERATURE, 0.0, ((0.35, 38.5), (0.8, 39.4))),
    (SPO2, 0.35, ((0.55, 95.0), (0.75, 92.0), (0.9, 90.0))),
    (SYSTOLIC_BP, 0.4, ((0.75, 100.0), (1.0, 86.0))),
    (DIASTOLIC_BP, 0.4, ((1.0, 50.0),)),
)
# When, as a share of the duration, the patient's NEWS2 has reached 5 (urgent response) and 7
# (emergency response) from the wristband's vitals alone (a cuff measures every 15 minutes):
# tests/test_simulator_scenarios.py checks both with clinical.news2, for the hour-long course
# and for the demo's short one, in which the temperature has no time to rise.
DETERIORATION_NEWS2_5_BY = 0.65
DETERIORATION_NEWS2_7_BY = 0.8


def _deterioration(profile: PatientProfile, start_s: float, duration_s: float) -> Script:
    baseline = dict(profile.baseline)
    courses = tuple(
        Course(
            vital,
            (
                (leaves * duration_s, 0.0),
                *((at * duration_s, value - baseline[vital]) for at, value in heading),
            ),
        )
        for vital, leaves, heading in _DETERIORATION
    )
    return Script("deterioration", start_s, math.inf, courses)


def _desaturation(profile: PatientProfile, start_s: float, duration_s: float) -> Script:
    """SpO2 falls to 85 % over the first quarter, stays there for another, then recovers to
    92 % - not to the patient's baseline - over the second half, and stays there; breathing and
    pulse quicken with it."""
    baseline = dict(profile.baseline)
    d = duration_s
    spo2 = (
        (0.0, 0.0),
        (0.25 * d, 85.0 - baseline[SPO2]),
        (0.5 * d, 85.0 - baseline[SPO2]),
        (d, 92.0 - baseline[SPO2]),
    )
    rr = ((0.0, 0.0), (0.25 * d, 7.0), (0.5 * d, 7.0), (d, 3.0))
    hr = ((0.0, 0.0), (0.25 * d, 16.0), (0.5 * d, 16.0), (d, 6.0))
    courses = (Course(SPO2, spo2), Course(RESPIRATORY_RATE, rr), Course(HEART_RATE, hr))
    return Script("desaturation", start_s, math.inf, courses)


AF_RATE = 130.0  # the mean ventricular rate of fast atrial fibrillation, beats/min
AF_SCATTER = 14.0  # standard deviation of the 1 Hz heart rate around it: irregularly irregular


def _atrial_fibrillation(profile: PatientProfile, start_s: float, duration_s: float) -> Script:
    """Fast and irregular for ``duration_s``, then back to sinus rhythm within a minute."""
    rise = AF_RATE - dict(profile.baseline)[HEART_RATE]
    hr = ((0.0, 0.0), (20.0, rise), (duration_s, rise), (duration_s + 60.0, 0.0))
    return Script(
        "atrial-fibrillation",
        start_s,
        start_s + duration_s + 60.0,
        (Course(HEART_RATE, hr),),
        scatter=((HEART_RATE, AF_SCATTER),),
    )


def _measure_nothing(device: SimDevice, start_s: float, duration_s: float) -> SimDevice:
    return replace(device, unmeasured=(*device.unmeasured, (start_s, start_s + duration_s)))


BATTERY_DRAINED_TO_PCT = 10.0  # where battery-drain leaves a device: below the low limit (20 %)


def _drain_battery(device: SimDevice, start_s: float, duration_s: float) -> SimDevice:
    return replace(device, drain=(start_s, start_s + duration_s, BATTERY_DRAINED_TO_PCT))


@dataclass(frozen=True)
class ScenarioKind:
    summary: str  # for `simulate --help` and docs/operations.md
    duration_s: float  # math.inf: it lasts
    script: Callable[[PatientProfile, float, float], Script] | None  # None: a device scenario


SCENARIOS: dict[str, ScenarioKind] = {
    "deterioration": ScenarioKind(
        "sepsis-like over an hour: RR, pulse and temperature rise, then SpO2 and systolic BP "
        f"fall; NEWS2 reaches 5 by {DETERIORATION_NEWS2_5_BY * 60:.0f} min and 7 by "
        f"{DETERIORATION_NEWS2_7_BY * 60:.0f} min, and stays",
        3600.0,
        _deterioration,
    ),
    "desaturation": ScenarioKind(
        "SpO2 falls to about 85 % over 3 min, stays 3 min, recovers only to about 92 %",
        720.0,
        _desaturation,
    ),
    "atrial-fibrillation": ScenarioKind(
        "a fast, irregular pulse (about 100-160/min, large beat-to-beat jumps) for 20 min",
        1200.0,
        _atrial_fibrillation,
    ),
    "silent-device": ScenarioKind(
        "the patient's wristband (or the device named) stops publishing and never resumes",
        math.inf,
        None,
    ),
    "battery-drain": ScenarioKind(
        "the patient's wristband (or the device named) runs its battery down to "
        f"{BATTERY_DRAINED_TO_PCT:.0f} % over 5 min, and keeps reporting",
        300.0,
        None,
    ),
    "off-ward": ScenarioKind(
        "all the patient's devices measure nothing for 20 min, then resume; the gap is not "
        "replayed",
        1200.0,
        None,
    ),
}


@dataclass(frozen=True)
class Scenario:
    """A scenario asked for. ``target``: a patient's id or its number in the ward (``2``), or
    for ``silent-device`` and ``battery-drain`` a device's id; None: the next patient no scenario has taken."""

    name: str
    target: str | None = None
    start_s: float = DEFAULT_START_S
    duration_s: float | None = None  # None: the kind's own

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``NAME[:PATIENT[:START_S]]``, as ``--scenario`` takes it; ValueError says what is wrong."""
        name, _, rest = text.partition(":")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        target, _, start = rest.partition(":")
        if ":" in start:
            raise ValueError(f"{text!r}: expected NAME[:PATIENT[:START_S]]")
        start_s = DEFAULT_START_S
        if start:
            try:
                start_s = float(start)
            except ValueError:
                raise ValueError(
                    f"{text!r}: START_S {start!r} is not a number of seconds"
                ) from None
            if not math.isfinite(start_s) or start_s < 0:
                raise ValueError(f"{text!r}: START_S must be 0 or more seconds")
        return cls(name, target or None, start_s)


@dataclass(frozen=True)
class Applied:
    """A scenario as it runs on the ward: whom it concerns and when."""

    name: str
    patient_id: str
    device_ids: tuple[str, ...]  # the devices it silences or drains (device scenarios only)
    start_s: float
    duration_s: float

    def describe(self) -> str:
        start = _clock(self.start_s)
        if self.name == "deterioration":
            at5 = _clock(self.start_s + DETERIORATION_NEWS2_5_BY * self.duration_s)
            at7 = _clock(self.start_s + DETERIORATION_NEWS2_7_BY * self.duration_s)
            return (
                f"{self.patient_id} deteriorates (sepsis-like) from {start} over "
                f"{_clock(self.duration_s)}: NEWS2 5 or more by {at5}, 7 or more by {at7}"
            )
        if self.name == "desaturation":
            return f"{self.patient_id} desaturates to about 85 % from {start}"
        if self.name == "atrial-fibrillation":
            end = _clock(self.start_s + self.duration_s)
            return f"{self.patient_id} is in atrial fibrillation from {start} to {end}"
        if self.name == "silent-device":
            return f"{', '.join(self.device_ids)} goes silent at {start}"
        if self.name == "battery-drain":
            end = _clock(self.start_s + self.duration_s)
            to = f"{BATTERY_DRAINED_TO_PCT:.0f} %"
            return (
                f"{', '.join(self.device_ids)} runs its battery down to {to} from {start} to {end}"
            )
        end = _clock(self.start_s + self.duration_s)
        return f"{self.patient_id} is off the ward from {start} to {end} (nothing measured)"


def _clock(seconds: float) -> str:
    """Time since the run's start as m:ss (h:mm:ss from an hour)."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _patient(ward: Ward, target: str | None, taken: set[str]) -> str:
    """The patient a scenario names (an id or a number), or the next one no scenario has."""
    patients = list(ward.patients)
    if target is None:
        free = [p for p in patients if p not in taken]
        if not free:
            raise ValueError("every patient of the simulated ward already has a scenario")
        return free[0]
    if target in ward.patients:
        return target
    if target.isdigit() and 1 <= int(target) <= len(patients):
        return patients[int(target) - 1]
    raise ValueError(
        f"no patient {target!r} in the simulated ward: give an id ({patients[0]}, ...) "
        f"or a number from 1 to {len(patients)}"
    )


def _devices(ward: Ward, scenario: Scenario, taken: set[str]) -> list[SimDevice]:
    """The devices a device scenario concerns: a named device, or the patient's wristband
    (silent-device, battery-drain), or all the patient's devices (off-ward)."""
    one = scenario.name in ("silent-device", "battery-drain")
    for device in ward.devices:
        if one and device.device_id == scenario.target:
            return [device]
    patient_id = _patient(ward, scenario.target, taken)
    mine = [d for d in ward.devices if d.patient_id == patient_id]
    return mine[:1] if one else mine  # a band comes first


def apply_scenarios(ward: Ward, scenarios: Sequence[Scenario]) -> list[Applied]:
    """Put the scenarios on the ward (its patients and devices change), in order; ValueError
    names a target the ward does not have. A patient named twice takes both scenarios."""
    taken: set[str] = set()
    applied: list[Applied] = []
    for scenario in scenarios:
        kind = SCENARIOS[scenario.name]
        duration = kind.duration_s if scenario.duration_s is None else scenario.duration_s
        silenced: tuple[str, ...] = ()
        if kind.script is not None:
            patient_id = _patient(ward, scenario.target, taken)
            patient = ward.patients[patient_id]
            patient.follow(kind.script(patient.profile, scenario.start_s, duration))
        else:
            devices = _devices(ward, scenario, taken)
            patient_id = devices[0].patient_id
            silenced = tuple(d.device_id for d in devices)
            change = _drain_battery if scenario.name == "battery-drain" else _measure_nothing
            ward.devices = [
                change(d, scenario.start_s, duration) if d.device_id in silenced else d
                for d in ward.devices
            ]
        taken.add(patient_id)
        applied.append(Applied(scenario.name, patient_id, silenced, scenario.start_s, duration))
    return applied
