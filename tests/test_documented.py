"""The store of what staff document for NEWS2: validated, append-only, latest per kind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinical.documented import (
    DocumentedError,
    DocumentedStore,
    Kind,
    Observation,
)
from clinical.news2 import Acvpu, AirOrOxygen, Parameter, SpO2Scale, score

P = "patient-7"
REASONS = {
    "bad-consciousness", "bad-oxygen", "bad-spo2-scale", "flow-without-oxygen", "bad-flow",
    "bad-text",
}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> DocumentedStore:
    return DocumentedStore(tmp_path / "documented.db")


def test_history_keeps_every_record_and_latest_is_the_newest_of_each_kind(
    store: DocumentedStore, tmp_path: Path
) -> None:
    store.record(P, (Observation(Kind.CONSCIOUSNESS, "A"),), "nurse-a", "clinician", 1_000)
    store.record(
        P,
        (Observation(Kind.AIR_OR_OXYGEN, True, 2.0, "nasal cannula"),
         Observation(Kind.SPO2_SCALE, 2)),
        "dr-b", "clinician", 2_000,
    )  # fmt: skip
    store.record(
        P, (Observation(Kind.CONSCIOUSNESS, "C", note="new"),), "nurse-c", "clinician", 3_000
    )
    store.record(
        "patient-8", (Observation(Kind.CONSCIOUSNESS, "U"),), "nurse-a", "clinician", 4_000
    )
    history = store.history(P)
    assert [(r.observation.kind, r.observation.value, r.by) for r in history] == [
        (Kind.CONSCIOUSNESS, "C", "nurse-c"),
        (Kind.SPO2_SCALE, 2, "dr-b"),
        (Kind.AIR_OR_OXYGEN, True, "dr-b"),
        (Kind.CONSCIOUSNESS, "A", "nurse-a"),
    ]
    assert history[2].observation.flow_l_min == 2.0
    assert history[2].observation.device == "nasal cannula"
    latest = store.latest(P)
    assert latest.consciousness is not None
    assert (latest.consciousness.value, latest.consciousness.by) == (Acvpu.NEW_CONFUSION, "nurse-c")
    assert latest.consciousness.time_ms == 3_000
    assert latest.air_or_oxygen is not None
    assert latest.air_or_oxygen.value is AirOrOxygen.OXYGEN
    assert latest.spo2_scale is not None
    assert latest.spo2_scale.value is SpO2Scale.SCALE_2
    assert store.latest("patient-9") == type(latest)()  # nothing documented: all None
    store.close()
    reopened = DocumentedStore(tmp_path / "documented.db")  # durable
    assert len(reopened.history(P)) == 4
    reopened.close()


def test_the_latest_feeds_news2_exactly(store: DocumentedStore) -> None:
    store.record(P, (Observation(Kind.CONSCIOUSNESS, "V"),), "nurse-a", "clinician", 10_000)
    latest = store.latest(P)
    news = score(
        latest.with_vitals({}),
        now_ms=20_000,
    )
    sub = news.sub_score(Parameter.CONSCIOUSNESS)
    assert sub is not None
    assert (sub.points, sub.documented_by) == (3, "nurse-a")
    assert Parameter.AIR_OR_OXYGEN in news.missing
    assert news.red_flag


def test_the_latest_of_all_patients_in_one_read_is_each_ones_latest(
    store: DocumentedStore,
) -> None:
    store.record(P, (Observation(Kind.CONSCIOUSNESS, "A"),), "nurse-a", "clinician", 1_000)
    store.record("patient-2", (Observation(Kind.SPO2_SCALE, 2),), "dr-b", "clinician", 2_000)
    store.record(P, (Observation(Kind.CONSCIOUSNESS, "P"),), "nurse-b", "clinician", 3_000)
    store.record(P, (Observation(Kind.AIR_OR_OXYGEN, True),), "nurse-a", "clinician", 4_000)
    every = store.latest_records_of()
    assert set(every) == {P, "patient-2"}
    for patient, found in every.items():
        assert found == store.latest_records(patient)
    assert every[P][Kind.CONSCIOUSNESS].observation.value == "P"
    assert store.latest_records_of(["patient-2", "patient-9"]) == {"patient-2": every["patient-2"]}


def test_nothing_is_updated_or_deleted(store: DocumentedStore, tmp_path: Path) -> None:
    store.record(P, (Observation(Kind.CONSCIOUSNESS, "A"),), "nurse-a", "clinician", 1_000)
    db = sqlite3.connect(tmp_path / "documented.db")
    for statement in ("UPDATE documented SET value = 'U'", "DELETE FROM documented"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    db.close()
    assert store.history(P)[0].observation.value == "A"


@pytest.mark.parametrize(
    ("kind", "value", "extra", "reason"),
    [
        (Kind.CONSCIOUSNESS, "X", {}, "bad-consciousness"),
        (Kind.CONSCIOUSNESS, "a", {}, "bad-consciousness"),
        (Kind.AIR_OR_OXYGEN, 1, {}, "bad-oxygen"),
        (Kind.SPO2_SCALE, 3, {}, "bad-spo2-scale"),
        (Kind.SPO2_SCALE, True, {}, "bad-spo2-scale"),
        (Kind.AIR_OR_OXYGEN, False, {"flow_l_min": 2.0}, "flow-without-oxygen"),
        (Kind.CONSCIOUSNESS, "A", {"device": "mask"}, "flow-without-oxygen"),
        (Kind.AIR_OR_OXYGEN, True, {"flow_l_min": float("nan")}, "bad-flow"),
        (Kind.AIR_OR_OXYGEN, True, {"flow_l_min": 0.0}, "bad-flow"),
        (Kind.AIR_OR_OXYGEN, True, {"flow_l_min": 61.0}, "bad-flow"),
        (Kind.AIR_OR_OXYGEN, True, {"device": "x" * 201}, "bad-text"),
        (Kind.CONSCIOUSNESS, "A", {"note": "line\nbreak"}, "bad-text"),
        (Kind.CONSCIOUSNESS, "A", {"note": ""}, "bad-text"),
    ],
)
def test_every_value_is_validated(
    kind: Kind, value: object, extra: dict[str, object], reason: str
) -> None:
    with pytest.raises(DocumentedError) as refused:
        Observation(kind, value, **extra)  # type: ignore[arg-type]
    assert refused.value.reason == reason


def test_a_record_names_a_patient_an_author_and_one_of_each_kind(store: DocumentedStore) -> None:
    a = Observation(Kind.CONSCIOUSNESS, "A")
    cases = [
        (("bad id/", (a,), "n", "clinician", 1), "bad-patient"),
        ((P, (a,), "has space", "clinician", 1), "bad-author"),
        ((P, (a,), "n", "clinician", -1), "bad-time"),
        ((P, (), "n", "clinician", 1), "nothing-documented"),
        ((P, (a, a), "n", "clinician", 1), "kind-repeated"),
    ]
    for args, reason in cases:
        with pytest.raises(DocumentedError) as refused:
            store.record(*args)
        assert refused.value.reason == reason
    assert store.history(P) == []  # nothing half-written


@given(
    kind=st.sampled_from(list(Kind)),
    value=st.one_of(st.text(max_size=3), st.booleans(), st.integers(-3, 5), st.floats()),
    flow=st.one_of(st.none(), st.floats(), st.integers(-5, 100)),
    text=st.one_of(st.none(), st.text(max_size=210)),
)
def test_any_value_is_an_observation_or_a_refusal_with_a_reason(
    kind: Kind, value: object, flow: object, text: object
) -> None:
    refused: DocumentedError | None = None
    try:
        o = Observation(kind, value, flow, text, text)  # type: ignore[arg-type]
    except DocumentedError as exc:
        refused = exc
    if refused is not None:
        assert refused.reason in REASONS
        return
    assert (o.kind is Kind.AIR_OR_OXYGEN and o.value is True) or (flow is None and text is None)
