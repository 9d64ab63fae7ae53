"""The alert stream on the real uvicorn the commands run: changes of the visible patients only,
in order, each batch in the access trail before it is sent; a reconnect replays what it
missed; a reading crossing a threshold arrives as an alert within a second or two; care-team
removal, a disabled user and the stream bounds; the server stops with a stream open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI

from access.care_teams import CareTeamStore
from access.errors import JournalError
from access.trail import Access
from access.users import UserStore
from clinical.alert_store import AlertStore
from clinical.alerts import AlertKey, Condition, Kind, apply
from clinical.news2 import Tier
from dashboards.alert_hub import StreamLimits
from dashboards.alert_stream import STREAM, TRAIL_ROUTE
from dashboards.app import create_app
from tests.api_access import Tokens, access_events, assign
from tests.populated import populate
from tests.servers import free_port, serving
from tests.stack import now_ms
from vitaltrail import cli
from vitaltrail.bench.sse_reader import SseReader
from vitaltrail.runtime import data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

P0, P1, P2 = "patient-0", "patient-1", "patient-2"
LIMITS = StreamLimits(per_user=2, total=3, keep_alive_s=0.3, redecide_s=0.3, ward_every_s=0.2)


@dataclass
class Served:
    settings: Settings
    base: str
    app: FastAPI
    dr_ward: dict[str, str]  # a clinician looking after patient-0 and patient-1

    def stream(self, headers: dict[str, str] | None = None, query: str = "") -> SseReader:
        return SseReader(f"{self.base}{STREAM}{query}", headers or self.dr_ward, timeout_s=10)


def ward(tmp_path: Path, patients: int, cared_for: list[str]) -> tuple[Settings, dict[str, str]]:
    """A populated data directory and dr-ward's headers, whose care team is ``cared_for``."""
    settings = populate(tmp_path / "data", patients=patients, readings=2)
    assign(settings, "ward", ["dr-ward"], cared_for)
    tokens = Tokens(settings)
    try:
        return settings, tokens.headers("dr-ward", "clinician")
    finally:
        tokens.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings, headers = ward(tmp_path, 3, [P0, P1])
    sources = replace(data_sources(settings), alerts_interval_s=60.0, alert_streams=LIMITS)
    app = create_app(sources)
    with serving(http_server(app, "127.0.0.1", free_port())) as port:
        yield Served(settings, f"http://127.0.0.1:{port}", app, headers)


def raise_alerts(settings: Settings, *patients: str) -> list[int]:
    """An extreme-pulse alert raised for each patient, as the engine would save it; the seqs."""
    store = AlertStore(settings.alerts_path)
    try:
        for patient in patients:
            key = AlertKey(patient, Kind.EXTREME, "pulse")
            _, events = apply(
                store.current(), [Condition(key, Tier.LOW_MEDIUM, "pulse 135 scores 3")],
                now_ms(), patients=[patient],
            )  # fmt: skip
            store.save(events)
        last = store.last_seq()
    finally:
        store.close()
    return list(range(last - len(patients) + 1, last + 1))


def accesses(settings: Settings) -> list[Access]:
    return [e.access for e in access_events(settings)]


def pushes(settings: Settings) -> list[Access]:
    return [a for a in accesses(settings) if a.route == TRAIL_ROUTE and a.request_id]


def test_only_visible_patients_in_order_each_recorded_before_it_is_sent(served: Served) -> None:
    reader = served.stream()
    try:
        assert reader.status == 200
        seqs = raise_alerts(served.settings, P0, P2, P1)
        got = reader.wait_for(lambda m: len([x for x in m if x.event == "alert"]) >= 2, 5)
        recorded = pushes(served.settings)  # read at once: the record came first
        alerts = [m.json() for m in got if m.event == "alert"]
        assert [(a["seq"], a["alert"]["patient_id"]) for a in alerts] == [
            (seqs[0], P0),
            (seqs[2], P1),
        ]
        assert [m.id for m in got if m.event == "alert"] == [str(seqs[0]), str(seqs[2])]
        assert alerts[0]["event"] == "raised"
        assert alerts[0]["alert"]["kind"] == "extreme"
        assert reader.retry == 2000
        covered = {p for a in recorded if a.outcome == "permit" for p in a.patients}
        assert covered == {P0, P1}, "patient-2 was never pushed, nor recorded as pushed"
        assert all(a.request_id and a.request_id.startswith("alert-seq-") for a in recorded)
        reader.wait_for(lambda m: False, LIMITS.keep_alive_s * 2)
        assert reader.comments >= 1, "keep-alives"
    finally:
        reader.close()
    connects = [a for a in accesses(served.settings) if a.route == f"GET {STREAM}"]
    assert connects
    assert connects[0].patients == (P0, P1)


def test_a_reconnect_replays_what_it_missed(served: Served) -> None:
    seqs = raise_alerts(served.settings, P0, P1, P0)
    for headers, query in (({"Last-Event-ID": str(seqs[0])}, ""), ({}, f"?after={seqs[0]}")):
        reader = served.stream({**served.dr_ward, **headers}, query)
        try:
            got = reader.wait_for(lambda m: len(m) >= 2, 5)
            assert [int(m.id or 0) for m in got if m.event == "alert"] == seqs[1:]
        finally:
            reader.close()
    live = served.stream()  # neither: live from now, nothing replayed
    try:
        assert live.wait_for(lambda m: any(x.event == "alert" for x in m), 1.0) == []
    finally:
        live.close()


def test_a_bad_last_event_id_is_refused_with_its_reason(served: Served) -> None:
    for bad in ("-1", "abc", "9" * 30, "1 2", "0x10"):
        reader = served.stream({**served.dr_ward, "Last-Event-ID": bad})
        reader.close()
        assert (reader.status, b"bad-last-event-id" in reader.body) == (400, True), bad


def test_nothing_is_sent_when_the_trail_cannot_record(served: Served) -> None:
    reader = served.stream()
    try:
        trail = served.app.state.access.trail

        def refuse(*_: object) -> None:
            raise JournalError("the journal is unavailable")

        trail.record = refuse
        raise_alerts(served.settings, P0)
        assert reader.ended.wait(5), "the stream ends rather than send unrecorded"
        assert reader.alerts() == []
    finally:
        reader.close()


def test_a_reading_crossing_a_threshold_is_pushed_within_two_seconds(served: Served) -> None:
    from tests.test_alert_routes import _ingest

    reader = served.stream()
    try:
        time.sleep(0.5)  # the engine has taken its first look at the store
        _ingest(served.settings, P0, hr=135, spo2=90)  # NEWS2 6, pulse and SpO2 each score 3
        stored = time.time()
        got = reader.wait_for(lambda m: any(x.event == "alert" for x in m), 5)
        first = next(m for m in got if m.event == "alert")
        assert first.arrived - stored < 2.0, "the full round is 60 s away: the follower did it"
        assert first.json()["alert"]["patient_id"] == P0
        wards = [m for m in reader.wait_for(lambda m: any(x.event == "ward" for x in m), 2)]
        assert any(m.event == "ward" and m.json()["time_ms"] > 0 for m in wards)
    finally:
        reader.close()


def test_taken_off_the_care_team_the_patient_is_no_longer_pushed(served: Served) -> None:
    reader = served.stream()
    try:
        teams = CareTeamStore(served.settings.access_db_path)
        teams.remove_member("ward", "dr-ward")
        teams.close()
        time.sleep(LIMITS.redecide_s * 3)
        raise_alerts(served.settings, P0, P1)
        assert reader.wait_for(lambda m: any(x.event == "alert" for x in m), 1.5) == []
        assert any(
            a.route == TRAIL_ROUTE and a.request_id is None for a in accesses(served.settings)
        )
    finally:
        reader.close()


def test_the_stream_bounds_refuse_with_a_reason(served: Served) -> None:
    tokens = Tokens(served.settings)
    other = tokens.headers("dr-other", "clinician")
    admin = tokens.headers("root", "admin")
    tokens.close()
    opened = [served.stream(), served.stream()]
    try:
        third = served.stream()
        assert third.status == 429
        assert b"too-many-streams-of-user" in third.body
        opened.append(served.stream(other))
        assert opened[-1].status == 200
        full = served.stream(other)
        assert full.status == 503
        assert b'"too-many-streams"' in full.body
        refused = served.stream(admin)
        assert refused.status == 403
    finally:
        for reader in opened:
            reader.close()
    deadline = time.monotonic() + 5  # closed streams free their places
    while (again := served.stream()).status != 200 and time.monotonic() < deadline:
        again.close()
        time.sleep(0.2)
    assert again.status == 200
    again.close()


def test_the_server_stops_with_a_stream_open(tmp_path: Path) -> None:
    settings, headers = ward(tmp_path, 1, [P0])
    sources = replace(data_sources(settings), alert_streams=LIMITS)
    server = http_server(create_app(sources), "127.0.0.1", free_port())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    reader = SseReader(f"http://127.0.0.1:{server.config.port}{STREAM}", headers)
    try:
        assert reader.status == 200
        started = time.monotonic()
        server.should_exit = True
        thread.join(5)
        assert not thread.is_alive(), "uvicorn and the lifespan shutdown finished"
        assert time.monotonic() - started < 3
        assert reader.ended.wait(2), "the client saw its stream end"
    finally:
        reader.close()


def test_a_disabled_users_stream_ends_and_the_refusal_is_on_record(served: Served) -> None:
    hasher = PasswordHasher.from_parameters(CHEAPEST)
    users = UserStore(served.settings.access_db_path, hasher=hasher)
    users.add("dr-ada", "clinician", "correct horse battery")
    users.close()
    assign(served.settings, "ada", ["dr-ada"], [P0])
    tokens = Tokens(served.settings)
    ada = tokens.headers("dr-ada", "clinician")
    tokens.close()
    reader = served.stream(ada)
    try:
        assert reader.status == 200
        assert (
            cli.main(["users", "disable", "dr-ada", "--data-dir", str(served.settings.data_dir)])
            == 0
        )
        assert reader.ended.wait(LIMITS.redecide_s * 5), "the stream ended"
    finally:
        reader.close()
    refused = [
        a for a in accesses(served.settings) if a.route == TRAIL_ROUTE and a.agent.id == "dr-ada"
    ]
    assert [(a.outcome, a.reason) for a in refused][-1] == ("deny", "user-disabled")
