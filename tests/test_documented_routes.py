"""Documenting consciousness and oxygen over the API, and the patient's NEWS2: who may write,
who may read, every decision in the access trail, CSRF for a session, 422 with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboards.app import create_app
from tests.api_access import Tokens, access_events, assign, writer_and_readers
from tests.auth_app import add_users, auth_app, client, csrf_token, sign_in
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

P0 = "patient-0"
DOC = f"/api/v1/patients/{P0}/documented"


@dataclass
class World:
    client: TestClient
    settings: Settings
    callers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = populate(tmp_path_factory.mktemp("documented") / "data", patients=1, readings=2)
    callers: dict[str, dict[str, str]] = {
        **writer_and_readers(settings, P0),
        "anonymous": {},
    }
    with TestClient(create_app(data_sources(settings))) as c:
        yield World(c, settings, callers)


# Who may write, and the refusal of those who may not.
WRITE = {
    "clinician in care team": (201, "permit", "care-team"),
    "clinician out of care team": (403, "deny", "not-in-care-team"),
    "patient self": (403, "deny", "may-not-write"),
    "app with consent": (403, "deny", "may-not-write"),
    "admin": (403, "deny", "admin-reads-no-patient-data"),
}
READERS = {"clinician in care team", "patient self", "app with consent"}


def test_only_a_clinician_of_the_care_team_writes_and_every_attempt_is_on_record(
    world: World,
) -> None:
    for name, headers in world.callers.items():
        before = len(access_events(world.settings))
        answer = world.client.post(DOC, json={"consciousness": "C"}, headers=headers)
        after = access_events(world.settings)
        if name == "anonymous":
            assert answer.status_code == 401
            assert len(after) == before  # no identity: refused before deciding
            continue
        status, outcome, reason = WRITE[name]
        assert answer.status_code == status, (name, answer.text)
        assert len(after) == before + 1, name
        event = after[-1].access
        assert (event.outcome, event.reason, event.interaction) == (outcome, reason, "create")
        assert event.patients == (P0,)
        assert event.route == "POST /api/v1/patients/{patient_id}/documented"
    history = world.client.get(DOC, headers=world.callers["clinician in care team"]).json()
    assert [(h["value"], h["by"]) for h in history["history"]] == [("C", "dr-in")]


def test_break_glass_writes_flagged(world: World) -> None:
    headers = {**world.callers["clinician out of care team"], "X-Break-Glass-Reason": "arrest"}
    answer = world.client.post(DOC, json={"oxygen": False}, headers=headers)
    assert answer.status_code == 201
    (record,) = answer.json()
    assert (record["kind"], record["value"], record["by"]) == ("air_or_oxygen", False, "dr-out")
    event = access_events(world.settings)[-1].access
    assert (event.reason, event.break_glass, event.interaction) == (
        "break-glass",
        "arrest",
        "create",
    )


def test_who_may_read_the_vitals_reads_what_is_documented_and_it_is_recorded(
    world: World,
) -> None:
    world.client.post(DOC, json={"spo2_scale": 1}, headers=world.callers["clinician in care team"])
    for name, headers in world.callers.items():
        for path in (DOC, f"/api/v1/patients/{P0}/news2"):
            before = len(access_events(world.settings))
            answer = world.client.get(path, headers=headers)
            if name == "anonymous":
                assert answer.status_code == 401
                continue
            assert answer.status_code == (200 if name in READERS else 403), (name, path)
            event = access_events(world.settings)[-1].access
            assert len(access_events(world.settings)) == before + 1
            assert (event.interaction, event.patients) == ("read", (P0,))
            if name in READERS:
                assert answer.headers["cache-control"] == "no-store"
                assert P0 in answer.text


def test_invalid_values_are_422_with_a_reason(world: World) -> None:
    clinician = world.callers["clinician in care team"]
    before = len(world.client.get(DOC, headers=clinician).json()["history"])
    for body, reason in [
        ({}, "nothing-documented"),
        ({"oxygen": False, "oxygen_flow_l_min": 2}, "flow-without-oxygen"),
        ({"oxygen_device": "mask"}, "flow-without-oxygen"),
        ({"note": "bad\u0000"}, "nothing-documented"),
        ({"consciousness": "A", "note": "tab\there"}, "bad-text"),
    ]:
        answer = world.client.post(DOC, json=body, headers=clinician)
        assert answer.status_code == 422, body
        assert answer.json()["detail"][0]["type"] == reason, body
    for body in [{"consciousness": "X"}, {"oxygen": "yes"}, {"spo2_scale": 3}, {"other": 1}]:
        assert world.client.post(DOC, json=body, headers=clinician).status_code == 422, body
    assert len(world.client.get(DOC, headers=clinician).json()["history"]) == before


def test_news2_scores_the_documented_consciousness_and_lists_what_is_missing(
    world: World,
) -> None:
    clinician = world.callers["clinician in care team"]
    world.client.post(DOC, json={"consciousness": "V"}, headers=clinician)
    world.client.post(DOC, json={"oxygen": True, "oxygen_flow_l_min": 2}, headers=clinician)
    news = world.client.get(f"/api/v1/patients/{P0}/news2", headers=clinician).json()
    subs = {s["parameter"]: s for s in news["sub_scores"]}
    assert subs["consciousness"]["points"] == 3
    assert subs["consciousness"]["value"] == "voice"
    assert subs["consciousness"]["documented_by"] == "dr-in"
    assert (subs["air_or_oxygen"]["points"], subs["air_or_oxygen"]["value"]) == (2, "oxygen")
    assert subs["pulse"]["documented_by"] is None  # measured by the band
    assert news["red_flag"] is True
    assert news["total"] == sum(s["points"] for s in news["sub_scores"])
    assert "consciousness" not in news["missing"]
    assert "air_or_oxygen" not in news["missing"]


def test_news2_marks_documented_values_missing_until_recorded(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=1, readings=1)
    assign(settings, "ward", ["dr-in"], [P0])
    t = Tokens(settings)
    headers = t.headers("dr-in", "clinician")
    t.close()
    with TestClient(create_app(data_sources(settings))) as c:
        news = c.get(f"/api/v1/patients/{P0}/news2", headers=headers).json()
    assert {"consciousness", "air_or_oxygen"} <= set(news["missing"])
    assert news["partial"] is True
    assert news["spo2_scale"] == 1


def test_a_session_writes_only_with_its_csrf_token(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=1, readings=1)
    assign(settings, "ward", ["nurse.ada"], [P0])
    add_users(tmp_path / "auth", ("nurse.ada", "clinician", None))
    with client(auth_app(settings, tmp_path / "auth")) as c:
        sign_in(c, "nurse.ada")
        refused = c.post(DOC, json={"consciousness": "A"})
        assert refused.status_code == 403
        assert refused.json()["reason"] == "csrf_missing"
        answer = c.post(DOC, json={"consciousness": "A"}, headers={"x-csrf-token": csrf_token(c)})
        assert answer.status_code == 201, answer.text
        assert answer.json()[0]["by"] == "nurse.ada"
        assert len(c.get(DOC).json()["history"]) == 1
