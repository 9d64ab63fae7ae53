"""The simulated ward: deterministic, plausible, realistic rates, events and faults."""

from __future__ import annotations

import itertools

from devices.vitals import BY_CODE, GLUCOSE, HEART_RATE, SYSTOLIC_BP
from simulator import build_ward
from simulator.physiology import PatientProfile, VirtualPatient

T0 = 1_763_700_000_000


def _readings(
    seed: int, devices: int, seconds: float
) -> list[tuple[float, str, list[tuple[str, float]]]]:
    ward = build_ward(devices, seed)
    return [
        (t, d.device_id, [(s.code, s.value) for s in samples])
        for t, d, samples in ward.schedule(T0, seconds)
    ]


def test_the_same_seed_gives_the_same_ward_and_readings() -> None:
    assert _readings(7, 9, 120) == _readings(7, 9, 120)
    assert _readings(7, 9, 120) != _readings(8, 9, 120)


def test_every_value_is_plausible_and_in_its_unit() -> None:
    ward = build_ward(30, seed=3)
    for _, _, samples in ward.schedule(T0, 900):
        for s in samples:
            vital = BY_CODE[s.code]
            assert s.unit == vital.unit
            assert vital.low <= s.value <= vital.high


def test_sampling_rates_are_realistic() -> None:
    ward = build_ward(3, seed=1)  # one patient: band, cuff, maybe cgm
    counts: dict[str, int] = {}
    for _, _, samples in ward.schedule(T0, 1800):
        for s in samples:
            counts[s.code] = counts.get(s.code, 0) + 1
    assert counts[HEART_RATE.code] == 1800  # 1 Hz
    assert counts[SYSTOLIC_BP.code] == 2  # every 15 minutes
    assert 440 <= counts["9279-1"] <= 460  # every 4 s


def test_diabetic_patients_wear_a_glucose_monitor_and_have_hypoglycaemias() -> None:
    ward = build_ward(60, seed=5)
    cgm_patients = {d.patient_id for d in ward.devices if d.kind == "cgm"}
    assert cgm_patients
    assert all(ward.patients[p].profile.diabetic for p in cgm_patients)
    glucose = [s for _, d, ss in ward.schedule(T0, 600) if d.kind == "cgm" for s in ss]
    assert all(s.code == GLUCOSE.code for s in glucose)


def test_events_move_the_vitals() -> None:
    import random

    profile = PatientProfile.random("p", random.Random(1))
    patient = VirtualPatient(profile, seed=2, horizon_s=86_400)
    tachy = next(e for e in patient.events if e.name == "tachycardia")
    before = patient.value(HEART_RATE, tachy.start_s - 300)
    during = max(
        patient.value(HEART_RATE, tachy.start_s + t)
        for t in range(60, int(tachy.duration_s) - 60, 5)
    )
    assert during > before + 20


def test_offline_windows_are_planned_when_asked() -> None:
    ward = build_ward(40, seed=2, offline_rate=0.5)
    offline = [d for d in ward.devices if d.offline]
    assert offline
    ((start, end),) = offline[0].offline
    assert offline[0].is_offline((start + end) / 2)
    assert not offline[0].is_offline(end + 1)
    assert list(itertools.islice(ward.schedule(T0, 5), 1))


def test_a_cuff_s_blood_pressure_stays_near_its_baseline_for_hours() -> None:
    """15 minutes between a cuff's readings is a long step for the walk: it must not swing."""
    ward = build_ward(2, seed=1)  # a band and a cuff
    systolic = [
        s.value
        for _, _, ss in ward.schedule(T0, 4 * 3600)
        for s in ss
        if s.code == SYSTOLIC_BP.code
    ]
    assert len(systolic) == 16
    assert all(80 <= v <= 170 for v in systolic), systolic
