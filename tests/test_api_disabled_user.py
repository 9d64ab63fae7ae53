"""Disabled means now: a disabled user's still-unexpired token is refused from the next request
(401 with WWW-Authenticate, and a refusal in the access trail), and `vitaltrail users disable`
ends their browser sessions; enabled again, the same token works."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi.testclient import TestClient

from access.care_teams import CareTeamStore
from access.directory import Directory
from access.journal import Journal
from access.trail import AccessEvent
from access.users import UserStore
from dashboards.app import create_app
from dashboards.session_store import SessionStore
from ledger.entries import EntryKind
from tests.api_access import Tokens, bearer, consent
from tests.populated import populate
from vitaltrail import cli
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

VITALS = "/api/v1/patients/patient-0/vitals"
LOCAL = "http://127.0.0.1:8000"  # plain HTTP on loopback: the session cookie's plain name


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A ward of two patients; dr-ada, of the embedded directory, looks after patient-0."""
    settings = populate(tmp_path / "data", patients=2, readings=1)
    journal = Journal(settings.access_journal_path)
    users = UserStore(settings.access_db_path, hasher=PasswordHasher.from_parameters(CHEAPEST))
    teams = CareTeamStore(settings.access_db_path)
    directory = Directory(users, teams, journal, "u-admin")
    directory.add_user("dr-ada", "clinician", "correct horse battery")
    directory.create_team("ward")
    directory.add_member("ward", "dr-ada")
    directory.add_patient("ward", "patient-0")
    for part in (users, teams, journal):
        part.close()
    return settings


def _users(settings: Settings, *argv: str) -> None:
    assert cli.main(["users", *argv, "--data-dir", str(settings.data_dir)]) == 0


def _accesses(settings: Settings) -> list[AccessEvent]:
    journal = Journal(settings.access_journal_path)
    try:
        rows = journal.after(0)
    finally:
        journal.close()
    return [AccessEvent.decode(r.body) for r in rows if r.kind is EntryKind.ACCESS]


def test_a_disabled_users_token_is_refused_from_the_next_request(settings: Settings) -> None:
    tokens = Tokens(settings)
    ada = tokens.headers("dr-ada", "clinician")  # valid for 300 s
    admin = tokens.headers("root", "admin")
    with TestClient(create_app(data_sources(settings))) as c:
        assert c.get(VITALS, headers=ada).status_code == 200
        _users(settings, "disable", "dr-ada")
        refused = c.get(VITALS, headers=ada)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == (
            'Bearer error="invalid_token", error_description="this account is disabled"'
        )
        ledger = c.get("/api/v1/ledger", headers={**ada, "X-Request-Id": "req-7"})
        assert ledger.status_code == 401  # no patient data there: refused all the same
        metrics = c.get("/metrics", headers=admin).text
        assert 'vitaltrail_api_tokens_refused_total{reason="user_disabled"} 2.0' in metrics
        assert (
            'vitaltrail_api_access_decisions_total{outcome="deny",reason="user-disabled"} 2.0'
        ) in metrics
        _users(settings, "enable", "dr-ada")
        assert c.get(VITALS, headers=ada).status_code == 200  # the same token
    tokens.close()
    events = [e.access for e in _accesses(settings)]
    assert [(a.outcome, a.reason) for a in events] == [
        ("permit", "care-team"),
        ("deny", "user-disabled"),
        ("deny", "user-disabled"),
        ("permit", "care-team"),
    ]
    on_vitals, on_ledger = events[1], events[2]
    assert (on_vitals.agent.kind, on_vitals.agent.id, on_vitals.agent.role) == (
        "user",
        "dr-ada",
        "clinician",
    )
    assert on_vitals.agent.jti == events[0].agent.jti  # the same token, named by its id
    assert (on_vitals.patients, on_vitals.data, on_vitals.route) == (
        ("patient-0",),
        ("vital-signs",),
        "GET /api/v1/patients/{patient_id}/vitals",
    )
    assert (on_ledger.patients, on_ledger.data, on_ledger.route, on_ledger.request_id) == (
        (),
        (),
        "GET /api/v1/ledger",
        "req-7",
    )


def test_disabling_a_user_ends_their_browser_sessions(settings: Settings) -> None:
    sessions = SessionStore(settings.sessions_path)
    opened = sessions.create("dr-ada")
    sessions.close()
    with TestClient(create_app(data_sources(settings)), base_url=LOCAL) as c:
        c.cookies.set("vitaltrail-session", opened.secret)
        assert c.get(VITALS).status_code == 200  # the session stands for dr-ada
        _users(settings, "disable", "dr-ada")
        sessions = SessionStore(settings.sessions_path)
        assert sessions.count() == 0  # ended at once, not at its next request
        sessions.close()
        _users(settings, "enable", "dr-ada")
        assert c.get(VITALS).status_code == 401  # enabling opens no ended session


def test_a_disabled_apps_token_is_refused_from_the_next_request(settings: Settings) -> None:
    tokens = Tokens(settings)
    app = bearer(tokens.app("telemed-1"))  # valid for 300 s
    consent(settings, "patient-0", "telemed-1")
    with TestClient(create_app(data_sources(settings))) as c:
        assert c.get(VITALS, headers=app).status_code == 200
        assert cli.main(["apps", "disable", "telemed-1", "--data-dir", str(settings.data_dir)]) == 0
        refused = c.get(VITALS, headers=app)
        assert refused.status_code == 401
        assert 'error_description="this app is disabled"' in refused.headers["WWW-Authenticate"]
    tokens.close()
    last = _accesses(settings)[-1].access
    assert (last.outcome, last.reason) == ("deny", "app-disabled")
    assert (last.agent.kind, last.agent.id, last.agent.role) == ("app", "telemed-1", "app")
    assert last.patients == ("patient-0",)
