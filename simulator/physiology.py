"""A virtual patient: vitals that drift around a personal baseline, with clinical events.

Each vital follows a mean-reverting random walk (Ornstein-Uhlenbeck) around the patient's
baseline; events - a tachycardia run, a desaturation, a fever, a hypoglycaemia for diabetic
patients - shift the target for a while. Coupling is kept simple: fever raises heart and
respiratory rate, desaturation raises heart rate. A scenario's :class:`Script` moves the target
along a planned course instead (``simulator.scenarios`` writes them), and may scatter a vital
sample by sample, as an irregular rhythm scatters the heart rate.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

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

# (baseline spread, noise per sqrt(s), reversion per s, decimals)
_DYNAMICS: dict[Vital, tuple[float, float, float, int]] = {
    HEART_RATE: (8.0, 1.2, 0.05, 0),
    SPO2: (1.0, 0.25, 0.1, 0),
    RESPIRATORY_RATE: (2.0, 0.3, 0.05, 0),
    BODY_TEMPERATURE: (0.3, 0.01, 0.002, 1),
    SYSTOLIC_BP: (12.0, 0.8, 0.01, 0),
    DIASTOLIC_BP: (8.0, 0.5, 0.01, 0),
    GLUCOSE: (15.0, 0.6, 0.003, 0),
}
_NORMAL = {
    HEART_RATE: 74.0,
    SPO2: 97.0,
    RESPIRATORY_RATE: 15.0,
    BODY_TEMPERATURE: 36.8,
    SYSTOLIC_BP: 124.0,
    DIASTOLIC_BP: 79.0,
    GLUCOSE: 105.0,
}


@dataclass(frozen=True)
class Event:
    name: str
    start_s: float
    duration_s: float
    shifts: tuple[tuple[Vital, float], ...]

    def shift(self, vital: Vital, t_s: float) -> float:
        if not self.start_s <= t_s < self.start_s + self.duration_s:
            return 0.0
        ramp = min(1.0, (t_s - self.start_s) / 60, (self.start_s + self.duration_s - t_s) / 60)
        return ramp * sum(delta for v, delta in self.shifts if v is vital)


def _ease(x: float) -> float:
    """0 to 1 with no jump in slope at either end (smoothstep): a course starts and settles gently."""
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Course:
    """One vital's shift from the patient's baseline at key times (s since the script's start),
    eased between them and held after the last."""

    vital: Vital
    keys: tuple[tuple[float, float], ...]  # (time, shift), times ascending

    def at(self, since_start_s: float) -> float:
        i = bisect_right(self.keys, since_start_s, key=lambda k: k[0])
        if i == 0:
            return 0.0
        if i == len(self.keys):
            return self.keys[-1][1]
        (t0, v0), (t1, v1) = self.keys[i - 1], self.keys[i]
        return v0 + (v1 - v0) * _ease((since_start_s - t0) / (t1 - t0))


@dataclass(frozen=True)
class Script:
    """A scenario's planned course for one patient, from ``start_s`` until ``end_s``.

    ``scatter`` adds independent noise of that standard deviation to each sample of a vital
    while the script runs (not to the underlying state): the beat-to-beat irregularity of
    atrial fibrillation, which a mean-reverting walk cannot produce.
    """

    name: str
    start_s: float
    end_s: float  # math.inf: the course holds for the rest of the run
    courses: tuple[Course, ...]
    scatter: tuple[tuple[Vital, float], ...] = ()

    def shift(self, vital: Vital, t_s: float) -> float:
        if t_s < self.start_s:
            return 0.0
        return sum(c.at(t_s - self.start_s) for c in self.courses if c.vital is vital)

    def scatter_sd(self, vital: Vital, t_s: float) -> float:
        if not self.start_s <= t_s < self.end_s:
            return 0.0
        return sum(sd for v, sd in self.scatter if v is vital)


# A scripted course starts from the patient's own baseline: random events that would still be
# running this close to its start are dropped with those that overlap it.
CALM_BEFORE_S = 600.0


@dataclass(frozen=True)
class PatientProfile:
    patient_id: str
    diabetic: bool
    baseline: tuple[tuple[Vital, float], ...]

    @classmethod
    def random(cls, patient_id: str, rng: random.Random) -> PatientProfile:
        diabetic = rng.random() < 0.3
        baseline = []
        for vital, normal in _NORMAL.items():
            spread = _DYNAMICS[vital][0]
            value = rng.gauss(normal + (40.0 if diabetic and vital is GLUCOSE else 0.0), spread / 2)
            baseline.append((vital, value))
        return cls(patient_id, diabetic, tuple(baseline))


class VirtualPatient:
    """Vitals over simulated time, sampled in order (``t_s`` never goes backwards)."""

    def __init__(self, profile: PatientProfile, seed: int, horizon_s: float = 86_400) -> None:
        self.profile = profile
        self._rng = random.Random(seed)
        self._baseline = dict(profile.baseline)
        self._state = dict(profile.baseline)
        self._t: dict[Vital, float] = {}
        self.events = self._plan_events(horizon_s)
        self.scripts: list[Script] = []

    def follow(self, script: Script) -> None:
        """Take on a scenario's course; random events near or during it are dropped, so what
        the script shows is the script's."""
        self.events = [
            e
            for e in self.events
            if e.start_s + e.duration_s < script.start_s - CALM_BEFORE_S
            or e.start_s >= script.end_s
        ]
        self.scripts.append(script)

    def _plan_events(self, horizon_s: float) -> list[Event]:
        rng, t = self._rng, 0.0
        events: list[Event] = []
        kinds: list[tuple[str, tuple[tuple[Vital, float], ...]]] = [
            ("tachycardia", ((HEART_RATE, 45.0),)),
            ("desaturation", ((SPO2, -8.0), (HEART_RATE, 12.0), (RESPIRATORY_RATE, 6.0))),
            ("fever", ((BODY_TEMPERATURE, 1.6), (HEART_RATE, 15.0), (RESPIRATORY_RATE, 4.0))),
        ]
        if self.profile.diabetic:
            kinds.append(("hypoglycaemia", ((GLUCOSE, -70.0), (HEART_RATE, 10.0))))
        while True:
            t += rng.expovariate(1 / 1800)  # one event per half hour on average
            if t >= horizon_s:
                return events
            name, shifts = rng.choice(kinds)
            events.append(Event(name, t, rng.uniform(120, 900), shifts))

    def value(self, vital: Vital, t_s: float) -> float:
        """The vital at time ``t_s`` (seconds since the simulation began), rounded as a device would."""
        _, noise, reversion, decimals = _DYNAMICS[vital]
        dt = max(0.0, t_s - self._t.get(vital, t_s))
        self._t[vital] = t_s
        target = self._baseline[vital] + sum(e.shift(vital, t_s) for e in self.events)
        target += sum(s.shift(vital, t_s) for s in self.scripts)
        # The walk's exact step, stable for any gap: a cuff's 15 minutes times a reversion of
        # 0.01/s would make a plain Euler step overshoot ninefold and swing to the range's ends.
        decay = math.exp(-reversion * dt)
        spread = noise * math.sqrt((1 - decay * decay) / (2 * reversion))
        x = target + (self._state[vital] - target) * decay + spread * self._rng.gauss(0, 1)
        self._state[vital] = x
        scatter = sum(s.scatter_sd(vital, t_s) for s in self.scripts)
        if scatter:  # no draw otherwise: an unscripted patient's values stay as they were
            x += self._rng.gauss(0, scatter)
        return round(min(max(x, vital.low), vital.high), decimals)
