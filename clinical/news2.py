"""The National Early Warning Score 2 of a patient's latest observations, and what it asks for.

Royal College of Physicians, *National Early Warning Score (NEWS) 2*, 2017: chart 1 (the
scoring system) gives the bands, charts 3 and 4 the clinical risk, response and monitoring
frequency. The chart prints each band's ends as whole numbers (one decimal for temperature);
a wearable's values fall between them (a temperature of 36.05 °C). Rule: a value scores in the
first band whose printed upper end it does not exceed (``value <= upper``), so every real value
has exactly one band; 36.05 scores in 36.1-38.0 and 11.5 breaths/min in 12-20.

A wearable reports neither consciousness nor supplemental oxygen. They are scored when staff
have documented them (who and when) and otherwise listed as missing; a value older than its
parameter's age limit is not scored but listed as stale. Either makes the score *partial*:
its total and tier are the least the patient could score, never "normal" by assumption.
Pure: the caller fetches the values and passes the time ``now_ms``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from devices.vitals import BODY_TEMPERATURE, HEART_RATE, RESPIRATORY_RATE, SPO2, SYSTOLIC_BP

MINUTE_MS = 60_000


class Parameter(StrEnum):
    """The seven rows of chart 1, in the chart's order."""

    RESPIRATION_RATE = "respiration_rate"
    SPO2 = "spo2"
    AIR_OR_OXYGEN = "air_or_oxygen"
    SYSTOLIC_BP = "systolic_bp"
    PULSE = "pulse"
    CONSCIOUSNESS = "consciousness"
    TEMPERATURE = "temperature"


MEASURED_LOINC: Mapping[Parameter, str] = MappingProxyType(
    {
        Parameter.RESPIRATION_RATE: RESPIRATORY_RATE.code,
        Parameter.SPO2: SPO2.code,
        Parameter.SYSTOLIC_BP: SYSTOLIC_BP.code,
        Parameter.PULSE: HEART_RATE.code,
        Parameter.TEMPERATURE: BODY_TEMPERATURE.code,
    }
)
"""The parameters a device measures, by the LOINC code its readings carry."""


class SpO2Scale(IntEnum):
    """Scale 2 only for a patient a clinician has given a target of 88-92 % (hypercapnic
    respiratory failure); everyone else is on scale 1."""

    SCALE_1 = 1
    SCALE_2 = 2


class AirOrOxygen(StrEnum):
    AIR = "air"
    OXYGEN = "oxygen"


class Acvpu(StrEnum):
    """Level of consciousness: Alert, or new Confusion, Voice, Pain, Unresponsive."""

    ALERT = "alert"
    NEW_CONFUSION = "confusion"
    VOICE = "voice"
    PAIN = "pain"
    UNRESPONSIVE = "unresponsive"


class Timed(Protocol):
    """A measured value with the time it was measured (``ingest.store.LatestVital`` is one)."""

    @property
    def value(self) -> float: ...

    @property
    def time_ms(self) -> int: ...


@dataclass(frozen=True)
class Measured:
    value: float
    time_ms: int


T = TypeVar("T", Acvpu, AirOrOxygen, SpO2Scale)


@dataclass(frozen=True)
class Documented(Generic[T]):
    """What a member of staff recorded about the patient, by whom and when."""

    value: T
    by: str
    time_ms: int


@dataclass(frozen=True)
class Observations:
    """A patient's latest observations: each vital's latest value by LOINC code (other codes
    are ignored), and what staff documented."""

    vitals: Mapping[str, Timed] = field(default_factory=dict)
    consciousness: Documented[Acvpu] | None = None
    air_or_oxygen: Documented[AirOrOxygen] | None = None
    spo2_scale: Documented[SpO2Scale] | None = None  # none documented: scale 1


DEFAULT_MAX_AGE_MS: Mapping[Parameter, int] = MappingProxyType(
    {
        Parameter.RESPIRATION_RATE: 15 * MINUTE_MS,
        Parameter.SPO2: 15 * MINUTE_MS,
        Parameter.SYSTOLIC_BP: 15 * MINUTE_MS,
        Parameter.PULSE: 15 * MINUTE_MS,
        Parameter.TEMPERATURE: 15 * MINUTE_MS,
        # Staff observe at least 12-hourly (chart 4): older than that is no current assessment.
        Parameter.CONSCIOUSNESS: 12 * 60 * MINUTE_MS,
        Parameter.AIR_OR_OXYGEN: 12 * 60 * MINUTE_MS,
    }
)
"""How old a value may be and still be scored as current. The SpO2 scale does not expire."""


@dataclass(frozen=True)
class Band:
    """Values above the previous band's ``upper`` and at most this ``upper`` score ``points``."""

    upper: float
    points: int


_OPEN = math.inf
_ROWS: Mapping[Parameter, tuple[Band, ...]] = MappingProxyType(
    {
        Parameter.RESPIRATION_RATE: (
            Band(8, 3),
            Band(11, 1),
            Band(20, 0),
            Band(24, 2),
            Band(_OPEN, 3),
        ),
        Parameter.SYSTOLIC_BP: (
            Band(90, 3),
            Band(100, 2),
            Band(110, 1),
            Band(219, 0),
            Band(_OPEN, 3),
        ),
        Parameter.PULSE: (
            Band(40, 3),
            Band(50, 1),
            Band(90, 0),
            Band(110, 1),
            Band(130, 2),
            Band(_OPEN, 3),
        ),
        Parameter.TEMPERATURE: (
            Band(35.0, 3),
            Band(36.0, 1),
            Band(38.0, 0),
            Band(39.0, 1),
            Band(_OPEN, 2),
        ),
    }
)
_SPO2_SCALE_1 = (Band(91, 3), Band(93, 2), Band(95, 1), Band(_OPEN, 0))
_SPO2_SCALE_2_LOW = (Band(83, 3), Band(85, 2), Band(87, 1))
_SPO2_ROWS: Mapping[tuple[SpO2Scale, AirOrOxygen], tuple[Band, ...]] = MappingProxyType(
    {
        (SpO2Scale.SCALE_1, AirOrOxygen.AIR): _SPO2_SCALE_1,
        (SpO2Scale.SCALE_1, AirOrOxygen.OXYGEN): _SPO2_SCALE_1,
        (SpO2Scale.SCALE_2, AirOrOxygen.AIR): (*_SPO2_SCALE_2_LOW, Band(_OPEN, 0)),
        (SpO2Scale.SCALE_2, AirOrOxygen.OXYGEN): (
            *_SPO2_SCALE_2_LOW,
            Band(92, 0),
            Band(94, 1),
            Band(96, 2),
            Band(_OPEN, 3),
        ),
    }
)


def bands(
    parameter: Parameter,
    scale: SpO2Scale = SpO2Scale.SCALE_1,
    air_or_oxygen: AirOrOxygen = AirOrOxygen.AIR,
) -> tuple[Band, ...]:
    """Chart 1's row for a measured parameter (SpO2's depends on the scale and, on scale 2,
    on air or oxygen), lowest band first; the last band is open-ended."""
    if parameter is Parameter.SPO2:
        return _SPO2_ROWS[scale, air_or_oxygen]
    return _ROWS[parameter]


def band_points(row: tuple[Band, ...], value: float) -> int:
    """The points of the first band whose upper end ``value`` does not exceed."""
    return row[bisect_left(row, value, key=lambda band: band.upper)].points


class Tier(StrEnum):
    ROUTINE = "routine"
    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class Response:
    """Chart 3's clinical risk and response, chart 4's monitoring frequency and action."""

    tier: Tier
    rank: int  # 0 (routine) .. 4 (high): sorts a ward by acuity
    clinical_risk: str
    response: str
    monitoring: str
    max_minutes_between_observations: int | None  # None: continuous monitoring
    action: str


RESPONSES: Mapping[Tier, Response] = MappingProxyType(
    {
        r.tier: r
        for r in (
            Response(
                Tier.ROUTINE,
                0,
                "Low",
                "Routine NEWS monitoring",
                "Minimum 12 hourly",
                12 * 60,
                "Continue routine NEWS monitoring.",
            ),
            Response(
                Tier.LOW,
                1,
                "Low",
                "Ward-based response",
                "Minimum 4-6 hourly",
                4 * 60,  # the stricter end of the chart's 4-6 hours
                "Inform the registered nurse, who must assess the patient and decide whether"
                " more frequent monitoring and/or escalation of care is required.",
            ),
            Response(
                Tier.LOW_MEDIUM,
                2,
                "Low-medium",
                "Urgent ward-based response",
                "Minimum 1 hourly",
                60,
                "Registered nurse to inform the medical team caring for the patient, who will"
                " review and decide whether escalation of care is necessary.",
            ),
            Response(
                Tier.MEDIUM,
                3,
                "Medium",
                "Urgent response",
                "Minimum 1 hourly",
                60,
                "Registered nurse to immediately inform the medical team caring for the patient"
                " and request urgent assessment by a clinician or team with core competencies"
                " in the care of acutely ill patients; care in an environment with monitoring"
                " facilities.",
            ),
            Response(
                Tier.HIGH,
                4,
                "High",
                "Emergency response",
                "Continuous monitoring of vital signs",
                None,
                "Registered nurse to immediately inform the medical team caring for the patient"
                " (at least specialist registrar level); emergency assessment by a team with"
                " critical care competencies, including advanced airway management; consider"
                " transfer to a level 2 or 3 care facility.",
            ),
        )
    }
)


def response_to(total: int, red_flag: bool) -> Response:
    """Chart 4: 7 or more emergency, 5-6 urgent, a single 3 urgent ward-based, 1-4 ward-based."""
    if total >= 7:
        return RESPONSES[Tier.HIGH]
    if total >= 5:
        return RESPONSES[Tier.MEDIUM]
    if red_flag:
        return RESPONSES[Tier.LOW_MEDIUM]
    return RESPONSES[Tier.LOW if total >= 1 else Tier.ROUTINE]


@dataclass(frozen=True)
class SubScore:
    parameter: Parameter
    points: int
    value: float | str  # the number measured, or what staff documented
    time_ms: int
    documented_by: str | None = None  # None: measured by a device
    # The points depend on an unscored parameter and are the least they could be: SpO2 of 93 %
    # or more on scale 2 with air or oxygen not documented scores as on air.
    lower_bound: bool = False


@dataclass(frozen=True)
class StaleValue:
    """A value too old to score as current: shown, not counted."""

    parameter: Parameter
    value: float | str
    time_ms: int
    age_ms: int
    max_age_ms: int


@dataclass(frozen=True)
class News2:
    """The score of the parameters that have a current value; ``partial`` when any has not."""

    total: int
    sub_scores: tuple[SubScore, ...]  # chart order
    missing: tuple[Parameter, ...]  # never recorded
    stale: tuple[StaleValue, ...]  # recorded, too old
    spo2_scale: SpO2Scale
    red_flag: bool  # some single parameter scores 3
    response: Response

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.stale)

    @property
    def unscored(self) -> tuple[Parameter, ...]:
        """Missing and stale parameters, in chart order."""
        out = set(self.missing) | {s.parameter for s in self.stale}
        return tuple(p for p in Parameter if p in out)

    def sub_score(self, parameter: Parameter) -> SubScore | None:
        return next((s for s in self.sub_scores if s.parameter is parameter), None)


@dataclass(frozen=True)
class _Value:
    value: float | str
    time_ms: int
    by: str | None


def _recorded(observations: Observations, parameter: Parameter) -> _Value | None:
    if parameter in MEASURED_LOINC:
        measured = observations.vitals.get(MEASURED_LOINC[parameter])
        if measured is None:
            return None
        if not math.isfinite(measured.value):
            raise ValueError(f"{parameter}: {measured.value!r} is not a finite number")
        return _Value(measured.value, measured.time_ms, None)
    documented = (
        observations.consciousness
        if parameter is Parameter.CONSCIOUSNESS
        else observations.air_or_oxygen
    )
    return (
        None if documented is None else _Value(documented.value, documented.time_ms, documented.by)
    )


def _sub_score(
    parameter: Parameter, found: _Value, scale: SpO2Scale, o2: AirOrOxygen | None
) -> SubScore:
    lower_bound = False
    if parameter is Parameter.CONSCIOUSNESS:
        points = 0 if found.value == Acvpu.ALERT else 3
    elif parameter is Parameter.AIR_OR_OXYGEN:
        points = 2 if found.value == AirOrOxygen.OXYGEN else 0
    else:
        assert isinstance(found.value, float | int)
        points = band_points(bands(parameter, scale, o2 or AirOrOxygen.AIR), found.value)
        if o2 is None and parameter is Parameter.SPO2:
            on_oxygen = band_points(bands(parameter, scale, AirOrOxygen.OXYGEN), found.value)
            lower_bound = on_oxygen != points
    return SubScore(parameter, points, found.value, found.time_ms, found.by, lower_bound)


def score(
    observations: Observations,
    *,
    now_ms: int,
    max_age_ms: Mapping[Parameter, int] = DEFAULT_MAX_AGE_MS,
) -> News2:
    """NEWS2 of the observations that are current at ``now_ms``. ``max_age_ms`` overrides
    :data:`DEFAULT_MAX_AGE_MS` per parameter (a parameter it lacks keeps its default)."""
    for parameter, limit in max_age_ms.items():
        if limit < 0:
            raise ValueError(f"{parameter}: a maximum age of {limit} ms is negative")
    scale = observations.spo2_scale.value if observations.spo2_scale else SpO2Scale.SCALE_1
    current: dict[Parameter, _Value] = {}
    missing: list[Parameter] = []
    stale: list[StaleValue] = []
    for parameter in Parameter:
        found = _recorded(observations, parameter)
        if found is None:
            missing.append(parameter)
            continue
        limit = max_age_ms.get(parameter, DEFAULT_MAX_AGE_MS[parameter])
        age = now_ms - found.time_ms
        if age > limit:
            stale.append(StaleValue(parameter, found.value, found.time_ms, age, limit))
        else:
            current[parameter] = found
    o2 = observations.air_or_oxygen
    o2_now = o2.value if o2 and Parameter.AIR_OR_OXYGEN in current else None
    subs = tuple(_sub_score(p, v, scale, o2_now) for p, v in current.items())
    total = sum(s.points for s in subs)
    red_flag = any(s.points == 3 for s in subs)
    return News2(
        total=total,
        sub_scores=subs,
        missing=tuple(missing),
        stale=tuple(stale),
        spo2_scale=scale,
        red_flag=red_flag,
        response=response_to(total, red_flag),
    )
