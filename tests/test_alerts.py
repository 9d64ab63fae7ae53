"""The alert engine's rules, its state machine and its store (clinical/alerts.py, alert_store.py)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinical.alert_store import AlertStore
from clinical.alerts import (
    ALLOWED,
    DEFAULT_STALE_AFTER_MS,
    Alert,
    AlertConfig,
    AlertError,
    AlertKey,
    Category,
    Condition,
    DeviceLimits,
    DeviceState,
    Event,
    EventKind,
    Kind,
    PatientState,
    State,
    acknowledge,
    apply,
    evaluate,
    snooze,
)
from clinical.news2 import MEASURED_LOINC, MINUTE_MS, Measured, Observations, Parameter, Tier
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

P = "patient-7"
CONFIG = AlertConfig()
NORMAL = {
    Parameter.RESPIRATION_RATE: 16.0,
    Parameter.SPO2: 97.0,
    Parameter.SYSTOLIC_BP: 120.0,
    Parameter.PULSE: 70.0,
    Parameter.TEMPERATURE: 37.0,
}


def patient(
    at_ms: int = 0,
    devices: Mapping[str, DeviceState] | None = None,
    values: Mapping[str, float] | None = None,
) -> PatientState:
    """NORMAL vitals measured at ``at_ms``, with ``values`` (by Parameter value) overriding."""
    merged = {**NORMAL, **{Parameter(k): v for k, v in (values or {}).items()}}
    vitals = {MEASURED_LOINC[p]: Measured(v, at_ms) for p, v in merged.items()}
    return PatientState(P, Observations(vitals=vitals), devices or {})


def found(conditions: list[Condition]) -> set[tuple[Kind, str, Tier]]:
    return {(c.key.kind, c.key.parameter, c.severity) for c in conditions}


# ---- rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, set()),  # NEWS2 0
        ({"respiration_rate": 22.0, "pulse": 95.0}, set()),  # 3, no single 3: low, no alert
        (  # a single 3: low-medium, and the extreme named
            {"respiration_rate": 25.0},
            {
                (Kind.NEWS2, "", Tier.LOW_MEDIUM),
                (Kind.EXTREME, "respiration_rate", Tier.LOW_MEDIUM),
            },
        ),
        (  # 2 + 2 + 1 = 5: medium
            {"respiration_rate": 22.0, "pulse": 115.0, "temperature": 38.5},
            {(Kind.NEWS2, "", Tier.MEDIUM)},
        ),
        (  # 3 + 3 + 2 = 8: high, two extremes
            {"respiration_rate": 26.0, "pulse": 131.0, "systolic_bp": 95.0},
            {
                (Kind.NEWS2, "", Tier.HIGH),
                (Kind.EXTREME, "respiration_rate", Tier.LOW_MEDIUM),
                (Kind.EXTREME, "pulse", Tier.LOW_MEDIUM),
            },
        ),
        (  # SpO2 91 % scores 3 on scale 1
            {"spo2": 91.0},
            {(Kind.NEWS2, "", Tier.LOW_MEDIUM), (Kind.EXTREME, "spo2", Tier.LOW_MEDIUM)},
        ),
    ],
)
def test_rules_table(values: dict[str, float], expected: set[tuple[Kind, str, Tier]]) -> None:
    conditions = evaluate(patient(values=values), 1_000, CONFIG)
    assert found(conditions) == expected
    assert all(c.key.category is Category.CLINICAL for c in conditions)


@pytest.mark.parametrize("parameter", list(DEFAULT_STALE_AFTER_MS))
def test_each_stale_limit_exactly_at_the_boundary(parameter: Parameter) -> None:
    limit = DEFAULT_STALE_AFTER_MS[parameter]
    state = patient(at_ms=0)
    at_limit = {c.key.parameter for c in evaluate(state, limit, CONFIG) if c.key.kind is Kind.STALE}
    after = {
        c.key.parameter for c in evaluate(state, limit + 1, CONFIG) if c.key.kind is Kind.STALE
    }
    assert parameter not in at_limit
    assert parameter in after


def test_stale_defaults_are_the_briefs() -> None:
    assert {p: ms // MINUTE_MS for p, ms in DEFAULT_STALE_AFTER_MS.items()} == {
        Parameter.PULSE: 5,
        Parameter.SPO2: 5,
        Parameter.RESPIRATION_RATE: 10,
        Parameter.SYSTOLIC_BP: 60,
        Parameter.TEMPERATURE: 30,
    }


def test_stale_limits_are_configurable_and_a_vital_never_recorded_raises_none() -> None:
    config = AlertConfig(stale_after_ms={Parameter.SYSTOLIC_BP: MINUTE_MS})
    state = PatientState(P, Observations(vitals={}))
    assert evaluate(state, 10 * 60 * MINUTE_MS, config) == []
    conditions = evaluate(patient(at_ms=0), MINUTE_MS + 1, config)
    assert found(conditions) == {(Kind.STALE, "systolic_bp", Tier.LOW)}
    with pytest.raises(ValueError, match="measured vital"):
        AlertConfig(stale_after_ms={Parameter.CONSCIOUSNESS: MINUTE_MS})
    with pytest.raises(ValueError, match="negative"):
        DeviceLimits(silent_ms=-1)
    with pytest.raises(ValueError, match="percent"):
        DeviceLimits(battery_low_pct=101)


def test_the_stale_setting_gives_every_measured_vital_one_limit_or_the_defaults(
    tmp_path: Path,
) -> None:
    """`alerts_stale_after_s` (an operator's, or a test's short limit) reaches the engine's
    config through the API's data sources; unset, each vital keeps its own default."""
    short = Settings(data_dir=tmp_path, alerts_stale_after_s=6.5)
    assert short.alerts_stale_after_ms == dict.fromkeys(MEASURED_LOINC, 6_500)
    sources = data_sources(short)
    assert sources.alerts_stale_after_ms == short.alerts_stale_after_ms
    sources.access.close()
    assert Settings().alerts_stale_after_ms == DEFAULT_STALE_AFTER_MS
    stale = evaluate(patient(at_ms=0), 6_501, AlertConfig(short.alerts_stale_after_ms))
    assert {c.key.parameter for c in stale} == set(MEASURED_LOINC)
    assert {c.message for c in stale if c.key.parameter == "pulse"} == {
        "no pulse reading for 6 s (limit 6 s)"  # not "0 min (limit 0 min)"
    }
    quiet = patient(at_ms=0, devices={"band": DeviceState(0, usual_interval_ms=1_000)})
    (silent,) = evaluate(quiet, 6_501, AlertConfig({}, devices=DeviceLimits(silent_ms=6_500)))
    assert silent.message == "device band silent for 6 s (it reports every 1 s)"
    assert evaluate(patient(at_ms=0), 6_501, AlertConfig(Settings().alerts_stale_after_ms)) == []


def test_stale_fires_with_only_time_advancing() -> None:
    """No new data: the engine evaluates on a timer and the stale pulse alert rises once."""
    state = patient(at_ms=0)  # the last readings ever
    alerts: dict[AlertKey, Alert] = {}
    raised_at: dict[str, int] = {}
    for minute in range(0, 61):
        now = minute * MINUTE_MS + 1  # just past each whole minute
        alerts, events = apply(alerts, evaluate(state, now, CONFIG), now)
        for e in events:
            assert e.kind is EventKind.RAISED  # raised once, never again while it holds
            raised_at[e.alert.key.parameter] = minute
    assert raised_at["pulse"] == 5
    assert raised_at["spo2"] == 5
    assert raised_at["respiration_rate"] == 10
    assert raised_at["temperature"] == 30
    assert raised_at["systolic_bp"] == 60


def test_technical_alerts_are_kept_apart_from_clinical_ones() -> None:
    devices = {
        "dev-a": DeviceState(0, signature_failures=3, battery_pct=20, usual_interval_ms=1_000),
        "dev-b": DeviceState(9 * MINUTE_MS, signature_failures=2, battery_pct=21),
    }
    now = 10 * MINUTE_MS
    conditions = evaluate(patient(now, devices, {"respiration_rate": 30.0}), now, CONFIG)
    technical = {
        (c.key.kind, c.key.parameter) for c in conditions if c.key.category is Category.TECHNICAL
    }
    clinical = {
        (c.key.kind, c.key.parameter) for c in conditions if c.key.category is Category.CLINICAL
    }
    assert technical == {
        (Kind.DEVICE_SILENT, "dev-a"),
        (Kind.SIGNATURE_FAILURES, "dev-a"),
        (Kind.BATTERY_LOW, "dev-a"),
    }
    assert clinical == {(Kind.NEWS2, ""), (Kind.EXTREME, "respiration_rate")}
    # exactly at the silent limit the device is still current
    band = {"d": DeviceState(0, usual_interval_ms=1_000)}
    at_limit = evaluate(patient(devices=band), CONFIG.devices.silent_ms, CONFIG)
    assert all(c.key.kind is not Kind.DEVICE_SILENT for c in at_limit)


def test_a_device_is_silent_when_it_misses_its_reports_not_between_them() -> None:
    """A cuff measuring every 15 minutes is not silent 20 minutes after its last measurement
    (an alarm for every cuff between two readings teaches a ward to ignore alarms); it is
    after three missed measurements. A device not heard from twice yet gets 30 minutes."""

    def silent(device: DeviceState, now: int) -> bool:
        conditions = evaluate(patient(devices={"d": device}), now, CONFIG)
        return any(c.key.kind is Kind.DEVICE_SILENT for c in conditions)

    cuff = DeviceState(0, usual_interval_ms=15 * MINUTE_MS)
    assert not silent(cuff, 20 * MINUTE_MS)
    assert not silent(cuff, 45 * MINUTE_MS)
    assert silent(cuff, 45 * MINUTE_MS + 1)
    band = DeviceState(0, usual_interval_ms=1_000)
    assert silent(band, 2 * MINUTE_MS + 1)  # 3 missed seconds is too short: 2 min at least
    assert not silent(band, 2 * MINUTE_MS)
    new = DeviceState(0)
    assert not silent(new, 30 * MINUTE_MS)
    assert silent(new, 30 * MINUTE_MS + 1)
    limits = Settings(device_silent_unknown_after_s=60).device_limits
    assert limits.silent_after_ms(new) == 2 * MINUTE_MS  # never under the least
    with pytest.raises(ValueError, match="one missed report"):
        DeviceLimits(silent_reports=0)


def test_the_contract_s_technical_defaults() -> None:
    limits = AlertConfig().devices
    assert limits == DeviceLimits(2 * MINUTE_MS, 20, 3, 10 * MINUTE_MS)
    settings = Settings(
        device_silent_after_s=30,
        battery_low_pct=15,
        signature_failures_alert=5,
        signature_failures_window_s=60,
    )
    assert settings.device_limits == DeviceLimits(30_000, 15, 5, MINUTE_MS)


def test_technical_alerts_resolve_when_their_condition_clears() -> None:
    def state(**device: int | None) -> PatientState:
        band = DeviceState(0, usual_interval_ms=1_000, **device)  # type: ignore[arg-type]
        return patient(devices={"dev-a": band})

    alerts, events = apply({}, evaluate(state(signature_failures=3, battery_pct=12), 1, CONFIG), 1)
    assert {(e.kind, e.alert.key.kind) for e in events} == {
        (EventKind.RAISED, Kind.SIGNATURE_FAILURES),
        (EventKind.RAISED, Kind.BATTERY_LOW),
    }
    assert {a.key.parameter for a in alerts.values()} == {"dev-a"}
    # the failures left the window, the battery was charged: both resolve, unacknowledged
    alerts, events = apply(
        alerts, evaluate(state(signature_failures=0, battery_pct=90), 2, CONFIG), 2
    )
    assert sorted(e.kind for e in events) == [EventKind.RESOLVED] * 2
    assert alerts == {}
    # a device that speaks again: its silent alert resolves
    late = CONFIG.devices.silent_ms + 1
    alerts, events = apply({}, evaluate(state(), late, CONFIG), late)
    assert [e.alert.key.kind for e in events] == [Kind.DEVICE_SILENT]
    quiet = patient(late, {"dev-a": DeviceState(late, usual_interval_ms=1_000)})
    alerts, events = apply(alerts, evaluate(quiet, late, CONFIG), late)
    assert [e.kind for e in events] == [EventKind.RESOLVED]


# ---- the state machine -------------------------------------------------------------------

NEWS = AlertKey(P, Kind.NEWS2)


def news(tier: Tier) -> list[Condition]:
    return [Condition(NEWS, tier, f"NEWS2 {tier}")]


def test_a_tier_rises_escalates_falls_and_resolves() -> None:
    alerts, events = apply({}, news(Tier.LOW_MEDIUM), 0)
    first = alerts[NEWS]
    assert [e.kind for e in events] == [EventKind.RAISED]
    assert first.severity is Tier.LOW_MEDIUM
    alerts, events = apply(alerts, news(Tier.HIGH), 1)
    assert [e.kind for e in events] == [EventKind.ESCALATED]
    assert alerts[NEWS].id == first.id
    assert alerts[NEWS].severity is Tier.HIGH
    alerts, events = apply(alerts, news(Tier.MEDIUM), 2)
    assert [e.kind for e in events] == [EventKind.DEESCALATED]
    assert alerts[NEWS].severity is Tier.MEDIUM
    assert alerts[NEWS].state is State.RAISED
    alerts, events = apply(alerts, [], 3)
    assert [e.kind for e in events] == [EventKind.RESOLVED]
    assert alerts == {}
    assert events[0].alert.state is State.RESOLVED
    assert events[0].alert.resolved_ms == 3


def test_acknowledged_alert_stays_quiet_then_escalates_to_raised() -> None:
    alerts, _ = apply({}, news(Tier.MEDIUM), 0)
    acked, event = acknowledge(alerts[NEWS], "nurse-a", 10)
    assert (event.kind, event.by, acked.acknowledged_by, acked.acknowledged_ms) == (
        EventKind.ACKNOWLEDGED, "nurse-a", "nurse-a", 10,
    )  # fmt: skip
    alerts = {NEWS: acked}
    for t in range(11, 20):
        alerts, events = apply(alerts, news(Tier.MEDIUM), t)
        assert events == []
        assert alerts[NEWS].state is State.ACKNOWLEDGED
    alerts, events = apply(alerts, news(Tier.HIGH), 20)
    assert [e.kind for e in events] == [EventKind.ESCALATED]
    assert alerts[NEWS].state is State.RAISED
    assert alerts[NEWS].severity is Tier.HIGH
    assert alerts[NEWS].id == acked.id
    assert alerts[NEWS].acknowledged_by is None
    with pytest.raises(AlertError) as again:
        acknowledge(acked, "nurse-b", 21)
    assert again.value.reason == "already-acknowledged"


def test_snooze_holds_under_repeated_true_conditions_then_re_raises_once() -> None:
    alerts, _ = apply({}, news(Tier.MEDIUM), 0)
    until = 10 * MINUTE_MS
    snoozed, event = snooze(alerts[NEWS], "nurse-a", until, 0)
    assert (event.kind, snoozed.snoozed_by, snoozed.snoozed_until_ms) == (
        EventKind.SNOOZED, "nurse-a", until,
    )  # fmt: skip
    alerts = {NEWS: snoozed}
    for t in range(MINUTE_MS, until, MINUTE_MS):  # a reading a minute keeps it true
        alerts, events = apply(alerts, news(Tier.MEDIUM), t)
        assert events == []
        assert alerts[NEWS].state is State.SNOOZED
    alerts, events = apply(alerts, [], until - 1)  # briefly false: the snooze still holds
    assert events == []
    assert alerts[NEWS].state is State.SNOOZED
    alerts, events = apply(alerts, news(Tier.MEDIUM), until)
    assert [e.kind for e in events] == [EventKind.SNOOZE_EXPIRED]
    assert alerts[NEWS].state is State.RAISED
    assert alerts[NEWS].id == snoozed.id
    for t in range(until + 1, until + 20):
        alerts, events = apply(alerts, news(Tier.MEDIUM), t)
        assert events == []  # once: not on every reading


def test_snooze_expiry_with_the_condition_gone_resolves_and_escalation_breaks_a_snooze() -> None:
    alerts, _ = apply({}, news(Tier.MEDIUM), 0)
    alerts[NEWS], _ = snooze(alerts[NEWS], "nurse-a", 100, 0)
    after, events = apply(alerts, [], 100)
    assert [e.kind for e in events] == [EventKind.RESOLVED]
    assert after == {}
    after, events = apply(alerts, news(Tier.HIGH), 50)
    assert [e.kind for e in events] == [EventKind.ESCALATED]
    assert after[NEWS].state is State.RAISED
    assert after[NEWS].snoozed_until_ms is None


def test_a_resolved_alert_that_recurs_is_a_new_alert() -> None:
    alerts, _ = apply({}, news(Tier.MEDIUM), 0)
    first = alerts[NEWS].id
    alerts, _ = apply(alerts, [], 1)
    alerts, events = apply(alerts, news(Tier.MEDIUM), 2)
    assert [e.kind for e in events] == [EventKind.RAISED]
    assert alerts[NEWS].id != first
    assert alerts[NEWS].raised_ms == 2


def test_actions_refuse_what_is_not_allowed() -> None:
    alerts, _ = apply({}, news(Tier.MEDIUM), 0)
    _, events = apply(alerts, [], 1)
    resolved = events[0].alert
    actions: list[Callable[[], object]] = [
        lambda: acknowledge(resolved, "a", 2),
        lambda: snooze(resolved, "a", 9, 2),
    ]
    for action in actions:
        with pytest.raises(AlertError) as refused:
            action()
        assert refused.value.reason == "alert-resolved"
    for until in (0, 5 * 60 * MINUTE_MS):  # not after now; longer than the maximum
        with pytest.raises(AlertError) as refused:
            snooze(alerts[NEWS], "a", until, 0)
        assert refused.value.reason == "bad-snooze"
    for by in ("", "nurse a", "n\u00e9"):
        with pytest.raises(AlertError) as refused:
            acknowledge(alerts[NEWS], by, 1)
        assert refused.value.reason == "bad-author"
    with pytest.raises(ValueError, match="two conditions"):
        apply({}, news(Tier.MEDIUM) + news(Tier.HIGH), 0)


def test_apply_limited_to_the_patients_evaluated_leaves_others_open() -> None:
    other = AlertKey("patient-8", Kind.NEWS2)
    alerts, _ = apply({}, [*news(Tier.MEDIUM), Condition(other, Tier.HIGH, "x")], 0)
    after, events = apply(alerts, [], 1, patients=[P])
    assert set(after) == {other}
    assert [e.alert.key for e in events] == [NEWS]


# ---- invariants --------------------------------------------------------------------------

KEYS = [NEWS, AlertKey(P, Kind.STALE, "pulse"), AlertKey(P, Kind.SIGNATURE_FAILURES, "dev-a")]
TIERS = [Tier.LOW, Tier.LOW_MEDIUM, Tier.MEDIUM, Tier.HIGH]
EVALUATE = st.tuples(
    st.just("evaluate"), st.dictionaries(st.sampled_from(KEYS), st.sampled_from(TIERS))
)
ACT = st.tuples(
    st.sampled_from(["acknowledge", "snooze"]), st.sampled_from(KEYS), st.integers(1, 5)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(EVALUATE, ACT), st.integers(0, 3)), max_size=30))
def test_any_sequence_keeps_the_invariants(steps: list[tuple[tuple[object, ...], int]]) -> None:
    ids = (f"id-{n}" for n in itertools.count())
    alerts: dict[AlertKey, Alert] = {}
    last_state: dict[str, State] = {}  # by alert id
    now = 0
    for action, dt in steps:
        now += dt
        events: list[Event] = []
        before = dict(alerts)
        if action[0] == "evaluate":
            wanted = action[1]
            assert isinstance(wanted, dict)
            conditions = [Condition(k, t, "m") for k, t in wanted.items()]
            alerts, events = apply(alerts, conditions, now, new_id=lambda: next(ids))
            for key, old in before.items():  # an unexpired snooze is silent unless it escalates
                if old.state is State.SNOOZED and now < (old.snoozed_until_ms or 0):
                    kinds = {e.kind for e in events if e.alert.key == key}
                    assert kinds <= {EventKind.ESCALATED, EventKind.DEESCALATED}
                    assert key in alerts
        else:
            kind, target, minutes = action
            assert isinstance(target, AlertKey)
            assert isinstance(minutes, int)
            if target not in alerts:
                continue
            if kind == "acknowledge" and alerts[target].state is State.ACKNOWLEDGED:
                with pytest.raises(AlertError, match="acknowledged by"):
                    acknowledge(alerts[target], "nurse", now)
                continue
            if kind == "acknowledge":
                alerts[target], event = acknowledge(alerts[target], "nurse", now)
            else:
                alerts[target], event = snooze(alerts[target], "nurse", now + minutes, now)
            events = [event]
        for event in events:
            alert = event.alert
            previous = last_state.get(alert.id)
            assert alert.state in ALLOWED[previous], (previous, alert.state)
            last_state[alert.id] = alert.state
        for key, alert in alerts.items():  # one open alert per key, never a resolved one
            assert alert.key == key
            assert alert.state is not State.RESOLVED
        open_ids = [a.id for a in alerts.values()]
        assert len(open_ids) == len(set(open_ids))


# ---- the store ---------------------------------------------------------------------------


def test_the_store_keeps_current_alerts_and_history_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    alerts, events = apply({}, news(Tier.MEDIUM), 0)
    store.save(events)
    acked, event = acknowledge(alerts[NEWS], "nurse-a", 5)
    store.save([event])
    store.close()

    reopened = AlertStore(path)
    assert reopened.current() == {NEWS: acked}
    assert reopened.current("patient-8") == {}
    assert reopened.get(acked.id) == acked
    history = reopened.history(P)
    assert [(e.kind, e.by, e.time_ms) for e in history] == [
        (EventKind.ACKNOWLEDGED, "nurse-a", 5), (EventKind.RAISED, None, 0),
    ]  # fmt: skip
    assert history[0].alert == acked
    _, events = apply(reopened.current(), [], 9)
    reopened.save(events)
    assert reopened.current() == {}
    assert reopened.get(acked.id) is None
    assert reopened.history(P)[0].kind is EventKind.RESOLVED
    reopened.close()

    db = sqlite3.connect(path)
    for statement in ("UPDATE alert_event SET by = 'x'", "DELETE FROM alert_event"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()


def test_the_settings_name_the_store_in_the_data_directory(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).alerts_path == tmp_path / "alerts.db"


def test_messages_name_parameters_as_a_nurse_reads_them() -> None:
    now = 10 * MINUTE_MS
    conditions = evaluate(patient(now, {}, {"respiration_rate": 30.0}), now, CONFIG)
    messages = {c.key.kind: c.message for c in conditions}
    assert messages[Kind.EXTREME] == "respiration rate 30 scores 3"
    assert messages[Kind.NEWS2].endswith("(partial: air or oxygen, consciousness not scored)")
    stale = evaluate(patient(at_ms=0), 61 * MINUTE_MS, CONFIG)
    assert "no systolic BP reading for 61 min (limit 60 min)" in {c.message for c in stale}
    assert all("_" not in c.message for c in [*conditions, *stale])
