"""NEWS2 against the Royal College of Physicians' chart, band edge by band edge.

Source: Royal College of Physicians, National Early Warning Score (NEWS) 2: Standardising the
assessment of acute-illness severity in the NHS, London: RCP, 2017 — chart 1 "The NEWS scoring
system" (the bands below) and chart 4 "Clinical response to the NEWS trigger thresholds" (the
tiers). The rows were checked against a published rendering of chart 1:

    respiration rate   ≤8:3  9-11:1  12-20:0  21-24:2  ≥25:3
    SpO2 scale 1       ≤91:3  92-93:2  94-95:1  ≥96:0
    SpO2 scale 2       ≤83:3  84-85:2  86-87:1  88-92 or ≥93 on air:0
                       93-94 on O2:1  95-96 on O2:2  ≥97 on O2:3
    air or oxygen      oxygen:2  air:0
    systolic BP        ≤90:3  91-100:2  101-110:1  111-219:0  ≥220:3
    pulse              ≤40:3  41-50:1  51-90:0  91-110:1  111-130:2  ≥131:3
    consciousness      alert:0  new confusion, voice, pain, unresponsive:3
    temperature        ≤35.0:3  35.1-36.0:1  36.1-38.0:0  38.1-39.0:1  ≥39.1:2

Values between the printed ends score by the ``<=`` rule: in the first band whose printed upper
end they do not exceed (36.05 °C scores as 36.1-38.0).
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinical import (
    DEFAULT_MAX_AGE_MS,
    Acvpu,
    AirOrOxygen,
    Documented,
    Measured,
    News2,
    Observations,
    Parameter,
    SpO2Scale,
    Tier,
    score,
)
from clinical.news2 import MEASURED_LOINC, RESPONSES, bands
from devices.vitals import BODY_TEMPERATURE, HEART_RATE, RESPIRATORY_RATE, SPO2, SYSTOLIC_BP
from ingest.store import LatestVital

NOW = 1_763_700_000_000
MIN = 60_000
RR, SPO2_, O2, BP, PULSE, ACVPU, TEMP = Parameter
S1, S2 = SpO2Scale.SCALE_1, SpO2Scale.SCALE_2
AIR, OXYGEN = AirOrOxygen.AIR, AirOrOxygen.OXYGEN
WEARABLE = (RR, SPO2_, BP, PULSE, TEMP)


def _obs(
    values: dict[Parameter, float] | None = None,
    *,
    age_ms: int = 0,
    consciousness: Acvpu | None = None,
    oxygen: AirOrOxygen | None = None,
    scale: SpO2Scale | None = None,
) -> Observations:
    return Observations(
        vitals={MEASURED_LOINC[p]: Measured(v, NOW - age_ms) for p, v in (values or {}).items()},
        consciousness=Documented(consciousness, "nurse-a", NOW - MIN) if consciousness else None,
        air_or_oxygen=Documented(oxygen, "nurse-b", NOW - 2 * MIN) if oxygen else None,
        spo2_scale=Documented(scale, "dr-c", NOW - 600 * MIN) if scale else None,
    )


def _points(result: News2, parameter: Parameter) -> int:
    sub = result.sub_score(parameter)
    assert sub is not None, f"{parameter} was not scored"
    return sub.points


def _vectors(
    parameter: Parameter, scale: SpO2Scale, o2: AirOrOxygen, pairs: str
) -> list[tuple[Parameter, SpO2Scale, AirOrOxygen, float, int]]:
    """``"value:points value:points ..."`` as test vectors."""
    return [
        (parameter, scale, o2, float(value), int(points))
        for value, points in (pair.split(":") for pair in pairs.split())
    ]


# Both sides of every band edge of chart 1, values between the printed ends, and the ends of
# the physiological range.
BOUNDARIES = [
    *_vectors(
        RR, S1, AIR, "2:3 8:3 8.5:1 9:1 11:1 11.5:0 12:0 20:0 20.5:2 21:2 24:2 24.5:3 25:3 80:3"
    ),
    *_vectors(SPO2_, S1, AIR, "40:3 91:3 91.5:2 92:2 93:2 93.5:1 94:1 95:1 95.5:0 96:0 100:0"),
    *_vectors(SPO2_, S1, OXYGEN, "40:3 91:3 91.5:2 92:2 93:2 93.5:1 94:1 95:1 95.5:0 96:0 100:0"),
    *_vectors(SPO2_, S2, AIR, "40:3 83:3 83.5:2 84:2 85:2 85.5:1 86:1 87:1 87.5:0 88:0 92:0"),
    *_vectors(SPO2_, S2, AIR, "92.5:0 93:0 94:0 95:0 96:0 97:0 100:0"),
    *_vectors(SPO2_, S2, OXYGEN, "40:3 83:3 83.5:2 84:2 85:2 85.5:1 86:1 87:1 87.5:0 88:0 92:0"),
    *_vectors(SPO2_, S2, OXYGEN, "92.5:1 93:1 94:1 94.5:2 95:2 96:2 96.5:3 97:3 100:3"),
    *_vectors(BP, S1, AIR, "40:3 90:3 90.5:2 91:2 100:2 100.5:1 101:1 110:1 110.5:0 111:0"),
    *_vectors(BP, S1, AIR, "219:0 219.5:3 220:3 300:3"),
    *_vectors(PULSE, S1, AIR, "20:3 40:3 40.5:1 41:1 50:1 50.5:0 51:0 90:0 90.5:1 91:1"),
    *_vectors(PULSE, S1, AIR, "110:1 110.5:2 111:2 130:2 130.5:3 131:3 300:3"),
    *_vectors(TEMP, S1, AIR, "25.0:3 35.0:3 35.05:1 35.1:1 36.0:1 36.05:0 36.1:0 38.0:0"),
    *_vectors(TEMP, S1, AIR, "38.05:1 38.1:1 39.0:1 39.05:2 39.1:2 45.0:2"),
]


@pytest.mark.parametrize(("parameter", "scale", "o2", "value", "points"), BOUNDARIES)
def test_each_band_edge_of_chart_1_scores_as_printed(
    parameter: Parameter, scale: SpO2Scale, o2: AirOrOxygen, value: float, points: int
) -> None:
    result = score(_obs({parameter: value}, oxygen=o2, scale=scale), now_ms=NOW)
    sub = result.sub_score(parameter)
    assert sub is not None
    assert (sub.points, sub.value, sub.time_ms, sub.documented_by) == (points, value, NOW, None)
    assert not sub.lower_bound


@pytest.mark.parametrize(
    ("level", "points"),
    [
        (Acvpu.ALERT, 0),
        (Acvpu.NEW_CONFUSION, 3),
        (Acvpu.VOICE, 3),
        (Acvpu.PAIN, 3),
        (Acvpu.UNRESPONSIVE, 3),
    ],
)
def test_consciousness_scores_alert_0_and_anything_else_3(level: Acvpu, points: int) -> None:
    result = score(_obs(consciousness=level), now_ms=NOW)
    sub = result.sub_score(ACVPU)
    assert sub is not None
    assert (sub.points, sub.value, sub.documented_by) == (points, level, "nurse-a")
    assert result.red_flag is (points == 3)


@pytest.mark.parametrize(("o2", "points"), [(AIR, 0), (OXYGEN, 2)])
def test_supplemental_oxygen_scores_2_and_air_0(o2: AirOrOxygen, points: int) -> None:
    sub = score(_obs(oxygen=o2), now_ms=NOW).sub_score(O2)
    assert sub is not None
    assert (sub.points, sub.value, sub.documented_by, sub.time_ms) == (
        points,
        o2,
        "nurse-b",
        NOW - 2 * MIN,
    )


NORMAL = {RR: 16, SPO2_: 97, BP: 120, PULSE: 70, TEMP: 37.0}


@pytest.mark.parametrize(
    ("changes", "o2", "level", "total", "tier", "red_flag"),
    [
        ({}, AIR, Acvpu.ALERT, 0, Tier.ROUTINE, False),
        ({PULSE: 91}, AIR, Acvpu.ALERT, 1, Tier.LOW, False),
        ({RR: 21, PULSE: 111}, AIR, Acvpu.ALERT, 4, Tier.LOW, False),
        ({RR: 8}, AIR, Acvpu.ALERT, 3, Tier.LOW_MEDIUM, True),
        ({}, AIR, Acvpu.NEW_CONFUSION, 3, Tier.LOW_MEDIUM, True),
        ({RR: 25, TEMP: 38.5}, AIR, Acvpu.ALERT, 4, Tier.LOW_MEDIUM, True),
        ({RR: 21, SPO2_: 94, PULSE: 111}, AIR, Acvpu.ALERT, 5, Tier.MEDIUM, False),
        ({BP: 90, SPO2_: 92}, AIR, Acvpu.ALERT, 5, Tier.MEDIUM, True),
        ({RR: 21, PULSE: 111}, OXYGEN, Acvpu.ALERT, 6, Tier.MEDIUM, False),
        ({RR: 21, PULSE: 111, TEMP: 38.1}, OXYGEN, Acvpu.ALERT, 7, Tier.HIGH, False),
        ({RR: 25, SPO2_: 91, BP: 220, PULSE: 131, TEMP: 35.0}, OXYGEN, Acvpu.PAIN, 20, Tier.HIGH, True),
    ],
)  # fmt: skip
def test_a_patient_s_total_sets_the_chart_4_response(
    changes: dict[Parameter, float],
    o2: AirOrOxygen,
    level: Acvpu,
    total: int,
    tier: Tier,
    red_flag: bool,
) -> None:
    result = score(_obs({**NORMAL, **changes}, consciousness=level, oxygen=o2), now_ms=NOW)
    assert (result.total, result.response.tier, result.red_flag) == (total, tier, red_flag)
    assert not result.partial
    assert [s.parameter for s in result.sub_scores] == list(Parameter)


@pytest.mark.parametrize(
    ("tier", "rank", "risk", "response", "monitoring", "every"),
    [
        (Tier.ROUTINE, 0, "Low", "Routine NEWS monitoring", "Minimum 12 hourly", 720),
        (Tier.LOW, 1, "Low", "Ward-based response", "Minimum 4-6 hourly", 240),
        (Tier.LOW_MEDIUM, 2, "Low-medium", "Urgent ward-based response", "Minimum 1 hourly", 60),
        (Tier.MEDIUM, 3, "Medium", "Urgent response", "Minimum 1 hourly", 60),
        (Tier.HIGH, 4, "High", "Emergency response", "Continuous monitoring of vital signs", None),
    ],
)
def test_each_tier_carries_the_rcp_words_and_monitoring_frequency(
    tier: Tier, rank: int, risk: str, response: str, monitoring: str, every: int | None
) -> None:
    r = RESPONSES[tier]
    assert (r.tier, r.rank, r.clinical_risk, r.response, r.monitoring) == (
        tier,
        rank,
        risk,
        response,
        monitoring,
    )
    assert r.max_minutes_between_observations == every
    assert r.action


def test_a_wearable_alone_gives_a_partial_score_that_names_what_it_lacks() -> None:
    result = score(_obs({**NORMAL, RR: 22}), now_ms=NOW)
    assert result.partial
    assert result.missing == (O2, ACVPU)
    assert result.unscored == (O2, ACVPU)
    assert result.sub_score(ACVPU) is None
    assert result.sub_score(O2) is None
    assert result.total == 2
    assert all(s.documented_by is None for s in result.sub_scores)


def test_with_nothing_recorded_every_parameter_is_missing() -> None:
    result = score(Observations(), now_ms=NOW)
    assert result.missing == tuple(Parameter)
    assert (result.total, result.sub_scores, result.partial) == (0, (), True)


def test_documented_consciousness_and_oxygen_complete_the_score() -> None:
    result = score(
        _obs(NORMAL, consciousness=Acvpu.VOICE, oxygen=OXYGEN),
        now_ms=NOW,
    )
    assert not result.partial
    assert (result.total, result.response.tier) == (5, Tier.MEDIUM)


def test_other_codes_are_ignored() -> None:
    vitals = {"8462-4": Measured(40, NOW), "2339-0": Measured(30, NOW)}
    assert score(Observations(vitals=vitals), now_ms=NOW).missing == tuple(Parameter)


def test_scale_2_without_documented_oxygen_scores_93_or_more_as_on_air_and_says_so() -> None:
    high = score(_obs({SPO2_: 97}, scale=S2), now_ms=NOW)
    sub = high.sub_score(SPO2_)
    assert sub is not None
    assert (sub.points, sub.lower_bound, high.spo2_scale) == (0, True, S2)
    assert O2 in high.missing
    low = score(_obs({SPO2_: 86}, scale=S2), now_ms=NOW).sub_score(SPO2_)
    assert low is not None
    assert (low.points, low.lower_bound) == (1, False)
    documented = score(_obs({SPO2_: 97}, scale=S2, oxygen=OXYGEN), now_ms=NOW).sub_score(SPO2_)
    assert documented is not None
    assert (documented.points, documented.lower_bound) == (3, False)


def test_without_a_documented_scale_spo2_is_scored_on_scale_1() -> None:
    result = score(_obs({SPO2_: 88}, oxygen=OXYGEN), now_ms=NOW)
    assert (result.spo2_scale, _points(result, SPO2_)) == (S1, 3)


def test_a_two_hour_old_blood_pressure_is_stale_not_scored() -> None:
    obs = Observations(
        vitals={
            SYSTOLIC_BP.code: Measured(85, NOW - 120 * MIN),
            HEART_RATE.code: Measured(72, NOW - 30_000),
        }
    )
    result = score(obs, now_ms=NOW)
    assert result.sub_score(BP) is None
    assert _points(result, PULSE) == 0
    [stale] = result.stale
    assert (stale.parameter, stale.value, stale.age_ms, stale.max_age_ms) == (
        BP,
        85,
        120 * MIN,
        15 * MIN,
    )
    assert BP not in result.missing
    assert BP in result.unscored
    assert result.partial
    assert (result.total, result.red_flag) == (0, False)


def test_a_value_exactly_at_its_age_limit_is_current_and_one_ms_more_is_stale() -> None:
    limit = DEFAULT_MAX_AGE_MS[RR]
    assert _points(score(_obs({RR: 25}, age_ms=limit), now_ms=NOW), RR) == 3
    assert score(_obs({RR: 25}, age_ms=limit + 1), now_ms=NOW).stale[0].parameter is RR


def test_age_limits_are_per_parameter_and_overridable() -> None:
    obs = _obs({BP: 95, TEMP: 39.5}, age_ms=60 * MIN)
    result = score(obs, now_ms=NOW, max_age_ms={BP: 90 * MIN})
    assert _points(result, BP) == 2
    assert [s.parameter for s in result.stale] == [TEMP]


def test_documented_consciousness_expires_after_12_hours() -> None:
    obs = Observations(consciousness=Documented(Acvpu.PAIN, "nurse-a", NOW - 12 * 60 * MIN - 1))
    result = score(obs, now_ms=NOW)
    assert result.sub_score(ACVPU) is None
    assert [(s.parameter, s.value) for s in result.stale] == [(ACVPU, Acvpu.PAIN)]


def test_a_reading_a_little_ahead_of_the_clock_is_current() -> None:
    assert _points(score(_obs({PULSE: 135}, age_ms=-2 * MIN), now_ms=NOW), PULSE) == 3


def test_the_store_s_latest_vitals_can_be_scored_directly() -> None:
    latest = LatestVital("p1", RESPIRATORY_RATE.code, "/min", 26.0, NOW - MIN, 4)
    assert _points(score(Observations(vitals={latest.code: latest}), now_ms=NOW), RR) == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        score(_obs({TEMP: bad}), now_ms=NOW)


def test_a_negative_age_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        score(_obs({TEMP: 37}), now_ms=NOW, max_age_ms={BP: -1})


# The chart as printed, parsed from its text: the property tests check the implementation's
# bands against it for any value.
PRINTED = {
    (RR, S1, AIR): "≤8:3 9-11:1 12-20:0 21-24:2 ≥25:3",
    (SPO2_, S1, AIR): "≤91:3 92-93:2 94-95:1 ≥96:0",
    (SPO2_, S1, OXYGEN): "≤91:3 92-93:2 94-95:1 ≥96:0",
    (SPO2_, S2, AIR): "≤83:3 84-85:2 86-87:1 88-92:0 ≥93:0",
    (SPO2_, S2, OXYGEN): "≤83:3 84-85:2 86-87:1 88-92:0 93-94:1 95-96:2 ≥97:3",
    (BP, S1, AIR): "≤90:3 91-100:2 101-110:1 111-219:0 ≥220:3",
    (PULSE, S1, AIR): "≤40:3 41-50:1 51-90:0 91-110:1 111-130:2 ≥131:3",
    (TEMP, S1, AIR): "≤35.0:3 35.1-36.0:1 36.1-38.0:0 38.1-39.0:1 ≥39.1:2",
}
RANGE = {
    RR: RESPIRATORY_RATE,
    SPO2_: SPO2,
    BP: SYSTOLIC_BP,
    PULSE: HEART_RATE,
    TEMP: BODY_TEMPERATURE,
}


def _printed_rows(text: str) -> list[tuple[Decimal | None, Decimal | None, int]]:
    rows: list[tuple[Decimal | None, Decimal | None, int]] = []
    for cell in text.split():
        band, points = cell.split(":")
        if band.startswith("≤"):
            rows.append((None, Decimal(band[1:]), int(points)))
        elif band.startswith("≥"):
            rows.append((Decimal(band[1:]), None, int(points)))
        else:
            low, high = band.split("-")
            rows.append((Decimal(low), Decimal(high), int(points)))
    return rows


def _printed_points(text: str, value: float) -> int:
    """The one printed band holding the value rounded up to the chart's last printed digit."""
    step = Decimal("0.1") if "." in text else Decimal(1)
    rounded = Decimal(value).quantize(step, rounding=ROUND_CEILING)
    holding = [
        points
        for low, high, points in _printed_rows(text)
        if (low is None or low <= rounded) and (high is None or rounded <= high)
    ]
    assert len(holding) == 1, f"{rounded} is in {len(holding)} printed bands of {text}"
    return holding[0]


@given(st.sampled_from(sorted(PRINTED)), st.data())
def test_every_value_in_the_physiological_range_scores_in_exactly_its_printed_band(
    key: tuple[Parameter, SpO2Scale, AirOrOxygen], data: st.DataObject
) -> None:
    parameter, scale, o2 = key
    vital = RANGE[parameter]
    value = data.draw(st.floats(vital.low, vital.high))
    result = score(
        _obs({parameter: value}, oxygen=o2, scale=scale if scale is S2 else None), now_ms=NOW
    )
    assert _points(result, parameter) == _printed_points(PRINTED[key], value)


@pytest.mark.parametrize("key", sorted(PRINTED))
def test_each_row_s_bands_ascend_without_gaps_and_end_open(
    key: tuple[Parameter, SpO2Scale, AirOrOxygen],
) -> None:
    uppers = [band.upper for band in bands(*key)]
    assert uppers == sorted(set(uppers))
    assert uppers[-1] == math.inf


_ages = st.integers(-5 * MIN, 30 * MIN)


@given(
    vitals=st.dictionaries(
        st.sampled_from(WEARABLE), st.tuples(st.floats(2, 300), _ages), max_size=5
    ),
    level=st.none() | st.sampled_from(Acvpu),
    o2=st.none() | st.sampled_from(AirOrOxygen),
    scale=st.none() | st.sampled_from(SpO2Scale),
)
def test_the_total_is_the_sum_of_the_sub_scores_and_the_tier_follows_it(
    vitals: dict[Parameter, tuple[float, int]],
    level: Acvpu | None,
    o2: AirOrOxygen | None,
    scale: SpO2Scale | None,
) -> None:
    obs = Observations(
        vitals={MEASURED_LOINC[p]: Measured(v, NOW - age) for p, (v, age) in vitals.items()},
        consciousness=Documented(level, "n", NOW) if level else None,
        air_or_oxygen=Documented(o2, "n", NOW) if o2 else None,
        spo2_scale=Documented(scale, "d", NOW) if scale else None,
    )
    result = score(obs, now_ms=NOW)
    assert result.total == sum(s.points for s in result.sub_scores)
    assert 0 <= result.total <= 20
    assert result.red_flag == any(s.points == 3 for s in result.sub_scores)
    scored = {s.parameter for s in result.sub_scores}
    assert scored.isdisjoint(result.unscored)
    assert scored | set(result.unscored) == set(Parameter)
    assert result.partial == bool(result.unscored)
    tier = result.response.tier
    if result.total >= 7:
        assert tier is Tier.HIGH
    elif result.total >= 5:
        assert tier is Tier.MEDIUM
    elif result.red_flag:
        assert tier is Tier.LOW_MEDIUM
    else:
        assert tier is (Tier.LOW if result.total else Tier.ROUTINE)
