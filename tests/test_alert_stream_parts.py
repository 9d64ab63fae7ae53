"""The stream's parts without a server: the store's replay query, the engine's follower of new
readings, the Last-Event-ID decoder (fuzzed: it takes a client's header) and the bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinical.alert_store import AlertStore
from clinical.alerts import AlertKey, Condition, Kind, apply
from clinical.news2 import Tier
from dashboards.alert_hub import AlertHub, StreamLimits
from dashboards.alert_routes import ReadingsFollower
from dashboards.alert_stream import MAX_SEQ, _start
from dashboards.refusals import Refused
from ingest.store import LatestVital


def _raise(store: AlertStore, patient: str, parameter: str, now: int) -> None:
    key = AlertKey(patient, Kind.EXTREME, parameter)
    condition = Condition(key, Tier.LOW_MEDIUM, f"{parameter} scores 3")
    _, events = apply(store.current(), [condition], now, patients=[patient])
    store.save(events)


def test_events_after_gives_the_patients_changes_after_a_seq_oldest_first(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    try:
        assert store.last_seq() == 0
        for i, (patient, parameter) in enumerate(
            [("p-a", "pulse"), ("p-b", "pulse"), ("p-a", "spo2"), ("p-c", "pulse")]
        ):
            _raise(store, patient, parameter, 1000 + i)
        assert store.last_seq() == 5  # p-a's spo2 alone resolved its pulse: 3 resolved, 4 raised
        found = store.events_after(0, {"p-a", "p-c"})
        assert [(seq, e.kind.value, e.alert.key.patient_id) for seq, e in found] == [
            (1, "raised", "p-a"), (3, "resolved", "p-a"), (4, "raised", "p-a"), (5, "raised", "p-c"),
        ]  # fmt: skip
        assert [seq for seq, _ in store.events_after(1, {"p-a", "p-c"}, limit=1)] == [3]
        assert store.events_after(0, set()) == []
        assert store.events_after(4, {"p-a"}) == []
        assert [seq for seq, _ in store.events_after(0, {"p-z"})] == []
    finally:
        store.close()


def _latest(patient: str, code: str, value: float, time_ms: int) -> LatestVital:
    return LatestVital(patient, code, "/min", value, time_ms, 0)


def test_the_follower_names_the_patients_whose_latest_values_moved() -> None:
    follower = ReadingsFollower()
    first = [_latest("p-a", "8867-4", 80, 1), _latest("p-b", "8867-4", 70, 1)]
    assert follower.changed(first) == set()  # the first look: a full round covers everyone
    assert follower.changed(first) == set()
    moved = [_latest("p-a", "8867-4", 80, 2), _latest("p-b", "8867-4", 70, 1)]
    assert follower.changed(moved) == {"p-a"}
    newcomer = [*moved, _latest("p-c", "9279-1", 18, 2)]
    assert follower.changed(newcomer) == {"p-c"}


@given(st.text(max_size=40) | st.from_regex(r"\A\s?[0-9]{1,20}\s?\Z"))
def test_a_last_event_id_is_a_seq_or_refused(text: str) -> None:
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and int(digits) <= MAX_SEQ:
        assert _start(text, None) == int(digits)
        return
    with pytest.raises(Refused) as refused:
        _start(text, None)
    assert (refused.value.status, refused.value.reason) == (400, "bad-last-event-id")


def test_last_event_id_wins_over_after() -> None:
    assert _start("7", 3) == 7
    assert _start(None, 3) == 3
    assert _start(None, None) is None


def test_the_hub_bounds_streams_per_user_and_in_all() -> None:
    async def run() -> None:
        hub = AlertHub(StreamLimits(per_user=2, total=3))
        assert [hub.admit("a"), hub.admit("a"), hub.admit("a")] == [
            None, None, "too-many-streams-of-user",
        ]  # fmt: skip
        assert [hub.admit("b"), hub.admit("c")] == [None, "too-many-streams"]
        hub.leave("a")
        assert hub.admit("c") is None
        assert hub.open_streams == 3
        hub.close()
        assert hub.admit("d") == "shutting-down"

    asyncio.run(run())


def test_a_waiting_stream_wakes_when_alerts_change() -> None:
    async def run() -> float:
        hub = AlertHub(StreamLimits())
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiting = asyncio.create_task(hub.wait(10.0))
        await asyncio.sleep(0.05)
        hub.alerts_changed()
        await waiting
        return loop.time() - start

    assert asyncio.run(run()) < 1.0
