"""Simulator scenarios: deterministic scripts that move a patient's vitals (and NEWS2) the way a
clinician expects, and devices that stop for good or for a while without replaying the gap."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinical.news2 import Measured, News2, Observations, Parameter, Tier, score
from devices.vitals import (
    BODY_TEMPERATURE,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
)
from simulator import Applied, Scenario, Ward, apply_scenarios, build_ward
from simulator.scenarios import (
    DETERIORATION_NEWS2_5_BY,
    DETERIORATION_NEWS2_7_BY,
    SCENARIOS,
)
from vitaltrail import cli
from vitaltrail.demo import demo_ward

T0 = 1_763_700_000_000


def _ward(seed: int, *scenarios: Scenario, devices: int = 6) -> tuple[Ward, list[Applied]]:
    ward = build_ward(devices, seed)
    return ward, apply_scenarios(ward, scenarios)


def _series(ward: Ward, seconds: float, patient_id: str) -> list[tuple[float, str, str, float]]:
    """(time s, device, LOINC code, value) of one patient's readings."""
    return [
        (t, d.device_id, s.code, s.value)
        for t, d, samples in ward.schedule(T0, seconds)
        if d.patient_id == patient_id
        for s in samples
    ]


def _batteries(ward: Ward, seconds: float, patient_id: str) -> list[tuple[float, str, int]]:
    """(time s, device, battery %) of each reading of one patient's devices."""
    return [
        (t, d.device_id, d.battery_pct(t))
        for t, d, _ in ward.schedule(T0, seconds)
        if d.patient_id == patient_id
    ]


def _news2(
    ward: Ward, seconds: float, patient_id: str, every_s: int = 1
) -> Iterator[tuple[float, int, Tier]]:
    """The patient's NEWS2 from their latest readings, after a wristband reading every
    ``every_s`` seconds."""
    latest: dict[str, Measured] = {}
    for t, device, samples in ward.schedule(T0, seconds):
        if device.patient_id != patient_id:
            continue
        for s in samples:
            latest[s.code] = Measured(s.value, s.time_ms)
        if device.kind == "band" and round(t) % every_s == 0:
            news = score(Observations(vitals=latest), now_ms=T0 + round(t * 1000))
            yield t, news.total, news.response.tier


def _first(trajectory: list[tuple[float, int, Tier]], at_least: int) -> float:
    return min(t for t, total, _ in trajectory if total >= at_least)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_is_deterministic_and_changes_the_patient_s_readings(name: str) -> None:
    def run(ward: Ward, patient_id: str) -> tuple[object, ...]:
        return _series(ward, 900, patient_id), _batteries(ward, 900, patient_id)

    def scripted() -> tuple[object, ...]:
        ward, (applied,) = _ward(4, Scenario(name, "2", 30.0))
        return run(ward, applied.patient_id)

    plain, _ = _ward(4)
    first = scripted()
    assert first == scripted()
    assert first != run(plain, "patient-002")


def test_a_scenario_on_one_patient_leaves_the_others_as_they_were() -> None:
    plain, _ = _ward(4)
    scripted, _ = _ward(4, Scenario("deterioration", "2", 0.0))
    assert _series(scripted, 600, "patient-001") == _series(plain, 600, "patient-001")
    assert _series(scripted, 600, "patient-002") != _series(plain, 600, "patient-002")


@pytest.mark.parametrize(("start_s", "duration_s"), [(60.0, 3600.0), (20.0, 300.0)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_deterioration_climbs_through_the_news2_tiers_on_time(
    seed: int, start_s: float, duration_s: float
) -> None:
    """Hour-long as `simulate` runs it, and compressed to five minutes as the demo does."""
    scenario = Scenario("deterioration", "1", start_s, duration_s)
    ward, (applied,) = _ward(seed, scenario, devices=2)
    every_s = 1 if duration_s < 600 else 5
    trajectory = list(_news2(ward, start_s + 1.2 * duration_s, applied.patient_id, every_s))

    def share(t: float) -> float:
        return (t - start_s) / duration_s

    assert max(total for t, total, _ in trajectory if t <= start_s) <= 1, "well at the start"
    assert max(total for t, total, _ in trajectory if share(t) <= 0.15) < 5, "not urgent at once"
    reaches_5, reaches_7 = _first(trajectory, 5), _first(trajectory, 7)
    assert share(reaches_5) <= DETERIORATION_NEWS2_5_BY
    assert share(reaches_7) <= DETERIORATION_NEWS2_7_BY
    assert _first(trajectory, 1) < reaches_5 < reaches_7, "it climbs, tier after tier"
    first_tier = {tier: min(t for t, _, x in trajectory if x is tier) for _, _, tier in trajectory}
    assert first_tier[Tier.LOW] < first_tier[Tier.MEDIUM] < first_tier[Tier.HIGH]
    late = [total for t, total, _ in trajectory if share(t) >= DETERIORATION_NEWS2_7_BY]
    assert min(late) >= 7, "and stays an emergency"


def test_deterioration_is_sepsis_like_breathing_pulse_temperature_up_pressure_spo2_down() -> None:
    ward, (applied,) = _ward(2, Scenario("deterioration", "1", 60.0), devices=2)
    baseline = dict(ward.patients[applied.patient_id].profile.baseline)
    series = _series(ward, 3660 + 900, applied.patient_id)

    def late_median(code: str) -> float:
        return statistics.median(v for t, _, c, v in series if c == code and t >= 3660)

    assert late_median(RESPIRATORY_RATE.code) >= baseline[RESPIRATORY_RATE] + 8
    assert late_median(HEART_RATE.code) >= baseline[HEART_RATE] + 35
    assert late_median(BODY_TEMPERATURE.code) >= 39.0
    assert late_median(SPO2.code) <= 91
    assert late_median(SYSTOLIC_BP.code) <= 95
    last = list(_news2(ward, 3660 + 900, applied.patient_id))[-1]
    assert last[1] >= 9


def test_desaturation_falls_to_about_85_then_recovers_only_partly() -> None:
    ward, (applied,) = _ward(3, Scenario("desaturation", "1", 120.0))
    spo2 = [
        (t, v) for t, _, code, v in _series(ward, 1800, applied.patient_id) if code == SPO2.code
    ]
    before = statistics.median(v for t, v in spo2 if t < 120)
    falls_to = min(t for t, v in spo2 if v <= 86)
    assert before >= 95
    assert 120 < falls_to <= 120 + 300, "an acute drop, within minutes"
    assert 82 <= min(v for _, v in spo2) <= 87
    after = statistics.median(v for t, v in spo2 if t >= 120 + 900)
    assert 90 <= after <= 93, "partial recovery"
    assert after <= before - 3
    nadir = _news2_at(ward, applied.patient_id, falls_to + 60)
    spo2_score = nadir.sub_score(Parameter.SPO2)
    assert spo2_score is not None
    assert spo2_score.points == 3, "a red flag on its own"
    assert nadir.response.tier in (Tier.LOW_MEDIUM, Tier.MEDIUM, Tier.HIGH)


def _news2_at(ward: Ward, patient_id: str, at_s: float) -> News2:
    latest: dict[str, Measured] = {}
    for _, device, samples in ward.schedule(T0, at_s + 1):
        if device.patient_id == patient_id:
            latest.update({s.code: Measured(s.value, s.time_ms) for s in samples})
    return score(Observations(vitals=latest), now_ms=T0 + round(at_s * 1000))


def _successive_jumps(values: list[float]) -> float:
    """The median absolute difference between successive values: beat-to-beat variability,
    robust to a wristband's rare motion artefact (where a root mean square is not)."""
    return statistics.median(abs(b - a) for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("seed", [1, 5])
def test_atrial_fibrillation_is_fast_and_irregular_unlike_sinus_rhythm(seed: int) -> None:
    start, lasts = 600.0, SCENARIOS["atrial-fibrillation"].duration_s
    ward, (applied,) = _ward(seed, Scenario("atrial-fibrillation", "1", start))
    pulse = [
        (t, v)
        for t, _, code, v in _series(ward, start + lasts + 600, applied.patient_id)
        if code == HEART_RATE.code
    ]
    sinus = [v for t, v in pulse if t < start]
    af = [v for t, v in pulse if start + 60 <= t < start + lasts]
    back = [v for t, v in pulse if t >= start + lasts + 180]
    assert _successive_jumps(af) >= 8
    assert _successive_jumps(af) >= 5 * max(1.0, _successive_jumps(sinus))
    assert _successive_jumps(back) <= _successive_jumps(af) / 5, "sinus rhythm again"
    assert 115 <= statistics.fmean(af) <= 145
    assert sum(100 <= v <= 160 for v in af) >= 0.9 * len(af)


def test_a_silent_device_stops_for_good_and_nothing_is_queued() -> None:
    ward, (applied,) = _ward(1, Scenario("silent-device", "2", 300.0))
    (band,) = applied.device_ids
    assert band == "patient-002-band"
    times = [t for t, device, _, _ in _series(ward, 3600, "patient-002") if device == band]
    assert times, "it published"
    assert max(times) == 299, "until it went silent, on its own second"
    cuff = [t for t, d, _, _ in _series(ward, 3600, "patient-002") if d.endswith("-cuff")]
    assert max(cuff) > 300, "the patient's other devices go on"
    device = next(d for d in ward.devices if d.device_id == band)
    assert not device.is_offline(1000), "not an outage: nothing waits to be replayed"


def test_a_silent_device_can_be_named() -> None:
    ward, (applied,) = _ward(1, Scenario("silent-device", "patient-001-cuff", 0.0))
    assert applied.device_ids == ("patient-001-cuff",)
    devices = {d for _, d, _, _ in _series(ward, 1800, "patient-001")}
    assert "patient-001-cuff" not in devices
    assert "patient-001-band" in devices


def test_battery_drain_runs_a_band_below_20_percent_within_minutes_and_it_keeps_reporting() -> None:
    ward, (applied,) = _ward(1, Scenario("battery-drain", "2", 120.0))
    (band,) = applied.device_ids
    assert band == "patient-002-band"
    levels = {round(t): pct for t, d, pct in _batteries(ward, 900, "patient-002") if d == band}
    assert levels[119] >= 60, "charged before"
    assert levels[119] - levels[0] <= 1, "a slow drain before the scenario"
    assert levels[120 + 300] < 20 <= levels[120 + 150], "down below 20 % within 5 minutes"
    assert max(levels) == 899, "it keeps publishing"
    assert all(a >= b for a, b in zip(levels.values(), list(levels.values())[1:], strict=False))
    others = {d: pct for t, d, pct in _batteries(ward, 900, "patient-001") if t == 899}
    assert all(pct >= 55 for pct in others.values()), "other devices drain slowly"
    assert "battery down to 10 %" in applied.describe()


def test_off_the_ward_is_a_gap_that_is_never_replayed() -> None:
    start = 120.0
    end = start + SCENARIOS["off-ward"].duration_s
    ward, (applied,) = _ward(2, Scenario("off-ward", "1", start))
    assert set(applied.device_ids) == {
        d.device_id for d in ward.devices if d.patient_id == "patient-001"
    }
    readings = list(ward.schedule(T0, end + 1800))
    mine = [(t, d, samples) for t, d, samples in readings if d.patient_id == "patient-001"]
    in_gap = [
        s
        for _, _, samples in mine
        for s in samples
        if T0 + start * 1000 <= s.time_ms < T0 + end * 1000
    ]
    assert in_gap == [], "nothing measured while away, so nothing is replayed"
    assert any(t < start for t, _, _ in mine)
    band_after = [t for t, d, _ in mine if d.kind == "band" and t >= end]
    assert band_after[0] == end, "the wristband resumes on its own second"
    assert any(d.kind == "cuff" and t >= end for t, d, _ in mine)
    assert not any(d.is_offline((start + end) / 2) for d in ward.devices)
    others = [t for t, d, _ in readings if d.patient_id != "patient-001" and start <= t < end]
    assert others, "the rest of the ward goes on"


def test_scenarios_without_a_patient_take_the_next_free_one() -> None:
    _, applied = _ward(1, Scenario("deterioration"), Scenario("desaturation"))
    assert [a.patient_id for a in applied] == ["patient-001", "patient-002"]
    with pytest.raises(ValueError, match="no patient '9'"):
        _ward(1, Scenario("desaturation", "9"))
    with pytest.raises(ValueError, match="every patient"):
        _ward(1, *[Scenario("desaturation")] * 4, devices=4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("deterioration", Scenario("deterioration", None, 60.0)),
        ("desaturation:3", Scenario("desaturation", "3", 60.0)),
        ("off-ward:sim-patient-002:90.5", Scenario("off-ward", "sim-patient-002", 90.5)),
        ("silent-device::0", Scenario("silent-device", None, 0.0)),
    ],
)
def test_scenario_specs_parse(text: str, expected: Scenario) -> None:
    assert Scenario.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sepsis", "unknown scenario 'sepsis'; known: deterioration"),
        ("desaturation:1:soon", "START_S 'soon' is not a number"),
        ("desaturation:1:-5", "0 or more seconds"),
        ("desaturation:1:nan", "0 or more seconds"),
        ("desaturation:1:2:3", "NAME[:PATIENT[:START_S]]"),
    ],
)
def test_a_bad_scenario_spec_is_refused_with_a_reason(
    text: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        Scenario.parse(text)
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["simulate", "--scenario", text])
    assert reason in capsys.readouterr().err


def test_simulate_takes_repeated_scenarios_and_refuses_a_patient_the_ward_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli.parser().parse_args(
        ["simulate", "--scenario", "deterioration:2:30", "--scenario", "silent-device"]
    )
    assert args.scenario == [
        Scenario("deterioration", "2", 30.0),
        Scenario("silent-device", None, 60.0),
    ]
    assert cli.parser().parse_args(["simulate"]).scenario == []
    code = cli.main(
        ["--data-dir", str(tmp_path), "simulate", "--devices", "4", "--scenario", "off-ward:3"]
    )
    assert code == 2
    assert "no patient '3' in the simulated ward" in capsys.readouterr().err
    assert not (tmp_path / "simulator").exists(), "refused before any device was made"


def test_the_demo_ward_deteriorates_early_and_says_so() -> None:
    ward, applied = demo_ward(12, 1)
    by_name = {a.name: a for a in applied}
    assert set(by_name) == {"deterioration", "desaturation", "silent-device", "battery-drain"}
    deterioration = by_name["deterioration"]
    assert deterioration.start_s < 60, "starts within the first minute"
    stated_5 = deterioration.start_s + DETERIORATION_NEWS2_5_BY * deterioration.duration_s
    assert stated_5 <= 4 * 60
    described = deterioration.describe()
    assert deterioration.patient_id in described
    assert f"5 or more by {int(stated_5 // 60)}:{int(stated_5 % 60):02d}" in described
    trajectory = list(_news2(ward, stated_5, deterioration.patient_id))
    assert max(total for _, total, _ in trajectory) >= 5
    assert max(total for t, total, _ in trajectory if t <= deterioration.start_s) <= 1
    assert by_name["desaturation"].start_s > stated_5
    assert by_name["silent-device"].start_s > stated_5
    assert len({a.patient_id for a in applied}) == 4, "each on a patient of its own"


def test_a_small_demo_ward_still_deteriorates() -> None:
    _, applied = demo_ward(2, 1)
    assert [(a.name, a.patient_id) for a in applied] == [("deterioration", "patient-001")]
