"""The session cookie at work: the principal it stands for, the CSRF token every change needs,
sign-out, and the two ways a session ends by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access.issuer import ROLE_SCOPES
from access.scopes import ScopeSet
from dashboards.session_store import SessionPolicy
from tests.auth_app import (
    ISS,
    PROBE,
    AuthApp,
    add_users,
    auth_app,
    client,
    csrf_token,
    sign_in,
)
from tests.populated import populate
from vitaltrail.settings import Settings

UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return populate(tmp_path_factory.mktemp("ward") / "data", patients=1, readings=1)


@pytest.fixture
def app(settings: Settings, tmp_path: Path) -> AuthApp:
    add_users(
        tmp_path,
        ("nurse.ada", "clinician", None),
        ("pat.dee", "patient", "patient-0"),
        ("admin.eve", "admin", None),
    )
    policy = SessionPolicy(ttl_s=8 * 3600, idle_s=900, touch_every_s=60)
    return auth_app(settings, tmp_path, session=policy)


@pytest.fixture
def c(app: AuthApp) -> Iterator[TestClient]:
    with client(app) as opened:
        yield opened


def principal(c: TestClient, **options: object) -> dict[str, object] | None:
    answer = c.get(PROBE, **options)  # type: ignore[arg-type]
    assert answer.status_code == 200
    found: dict[str, object] | None = answer.json()["principal"]
    return found


def test_a_session_stands_for_the_user_as_a_token_would(c: TestClient, app: AuthApp) -> None:
    assert principal(c) is None
    sign_in(c, "nurse.ada")
    who = c.get("/auth/session").json()
    assert principal(c) == {
        "subject": "nurse.ada",
        "client_id": "vitaltrail:web",
        "kind": "user",
        "roles": ["clinician"],
        "scopes": str(ScopeSet.parse(ROLE_SCOPES["clinician"])),
        "token_id": who["session"],
        "issuer": ISS,
        "patient": None,
        "expires_at": int(app.clock.now) + 8 * 3600,
    }
    assert who["session"].startswith("s-")
    assert who["session"] not in c.cookies["vitaltrail-session"]  # the trail's id opens nothing


def test_a_patients_session_carries_their_patient_id(c: TestClient) -> None:
    sign_in(c, "pat.dee")
    found = principal(c)
    assert found is not None
    assert found["roles"] == ["patient"]
    assert found["patient"] == "patient-0"
    assert found["scopes"] == str(ScopeSet.parse(ROLE_SCOPES["patient"]))


@pytest.mark.parametrize("method", UNSAFE)
def test_a_change_without_the_csrf_token_is_refused(
    c: TestClient, app: AuthApp, method: str
) -> None:
    sign_in(c, "nurse.ada")
    answer = c.request(method, PROBE, content=b"{}")
    assert answer.status_code == 403
    assert answer.json()["reason"] == "csrf_missing"
    assert "content-security-policy" in answer.headers  # refusals carry the headers too
    wrong = c.request(method, PROBE, headers={"x-csrf-token": "not-it"})
    assert wrong.status_code == 403
    assert wrong.json()["reason"] == "csrf_mismatch"
    state = app.state(c)
    assert (state.refusals["csrf_missing"], state.refusals["csrf_mismatch"]) == (1, 1)


@pytest.mark.parametrize("method", UNSAFE)
def test_a_change_with_the_csrf_token_goes_through(c: TestClient, method: str) -> None:
    sign_in(c, "nurse.ada")
    answer = c.request(method, PROBE, headers={"x-csrf-token": csrf_token(c)}, content=b"{}")
    assert answer.status_code == 200
    assert answer.json()["principal"]["subject"] == "nurse.ada"


def test_a_form_may_carry_the_token_in_a_field(c: TestClient) -> None:
    sign_in(c, "nurse.ada")
    form = {"csrf_token": csrf_token(c), "note": "hello"}
    answer = c.post(PROBE, data=form)
    assert answer.status_code == 200
    assert answer.json()["principal"]["subject"] == "nurse.ada"
    assert "note=hello" in answer.json()["body"]  # the route still reads the whole body
    assert c.post(PROBE, data={"csrf_token": "guessed"}).status_code == 403
    too_big = {"csrf_token": csrf_token(c), "note": "x" * 20_000}
    assert c.post(PROBE, data=too_big).status_code == 403  # a form past the bound: no token


def test_another_sites_request_is_refused_even_with_the_token(c: TestClient, app: AuthApp) -> None:
    sign_in(c, "nurse.ada")
    headers = {"x-csrf-token": csrf_token(c), "sec-fetch-site": "cross-site"}
    answer = c.post(PROBE, headers=headers)
    assert answer.status_code == 403
    assert answer.json()["reason"] == "csrf_cross_site"
    same = {**headers, "sec-fetch-site": "same-origin"}
    assert c.post(PROBE, headers=same).status_code == 200


def test_reads_need_no_token(c: TestClient) -> None:
    sign_in(c, "nurse.ada")
    for method in ("GET", "HEAD", "OPTIONS"):
        assert c.request(method, PROBE).status_code in (200, 405), method


def test_a_bearer_request_needs_no_csrf_token_and_gets_no_session(c: TestClient) -> None:
    """With an Authorization header the token speaks, whatever cookie comes along: no CSRF
    check (a page on another site cannot set that header), and no session principal."""
    sign_in(c, "nurse.ada")
    answer = c.post(PROBE, headers={"authorization": "Bearer anything"})
    assert answer.status_code == 200
    assert answer.json()["principal"] is None


def test_sign_out_ends_the_session_on_the_server(c: TestClient, app: AuthApp) -> None:
    sign_in(c, "nurse.ada")
    secret = c.cookies["vitaltrail-session"]
    refused = c.post("/auth/sign-out")  # sign-out is a change: it needs the token too
    assert refused.status_code == 403
    assert principal(c) is not None
    out = c.post("/auth/sign-out", headers={"x-csrf-token": csrf_token(c)})
    assert out.status_code == 303
    assert out.headers["location"] == "/sign-in?signed-out"
    assert "You have signed out." in c.get(out.headers["location"]).text
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert '"cache"' in out.headers["clear-site-data"]
    assert "vitaltrail-session" not in c.cookies
    assert app.state(c).sessions.store.count() == 0
    # the cookie a copy of the browser kept is dead too
    assert principal(c, headers={"cookie": f"vitaltrail-session={secret}"}) is None
    assert (
        c.get("/auth/session", headers={"cookie": f"vitaltrail-session={secret}"}).status_code
        == 401
    )


def test_a_session_ends_after_its_lifetime_however_busy(c: TestClient, app: AuthApp) -> None:
    sign_in(c, "nurse.ada")
    for _ in range(32):  # a request every 15 minutes: never idle
        app.clock.now += 899
        assert principal(c) is not None
    app.clock.now += 40  # eight hours and 8 s after sign-in, 40 s after the last request
    answer = c.get(PROBE)
    assert answer.json()["principal"] is None
    assert "vitaltrail-session=" in answer.headers["set-cookie"]  # the browser forgets it
    assert "Max-Age=0" in answer.headers["set-cookie"]
    assert app.state(c).sessions.store.refusals["session_expired"] == 1
    assert app.state(c).sessions.store.count() == 0


def test_a_session_ends_when_left_idle(c: TestClient, app: AuthApp) -> None:
    sign_in(c, "nurse.ada")
    app.clock.now += 899
    assert principal(c) is not None
    app.clock.now += 899  # 15 min since the last request, 30 since sign-in: still alive
    assert principal(c) is not None
    app.clock.now += 901
    assert principal(c) is None
    assert app.state(c).sessions.store.refusals["session_idle"] == 1


def test_disabling_a_user_ends_their_sessions(c: TestClient, app: AuthApp) -> None:
    sign_in(c, "nurse.ada")
    app.state(c).issuer.users.set_disabled("nurse.ada")
    assert principal(c) is None
    assert app.state(c).sessions.store.refusals["session_user_disabled"] == 1
    app.state(c).issuer.users.set_disabled("nurse.ada", False)
    assert principal(c) is None  # enabling again does not bring the session back


def test_an_unknown_cookie_is_forgotten(c: TestClient, app: AuthApp) -> None:
    answer = c.get(PROBE, headers={"cookie": "vitaltrail-session=made-up"})
    assert answer.json()["principal"] is None
    assert "Max-Age=0" in answer.headers["set-cookie"]
    assert app.state(c).sessions.store.refusals["session_unknown"] == 1
    # and an unsafe request with a dead cookie is not a cookie-authenticated one: no CSRF
    posted = c.post(PROBE, headers={"cookie": "vitaltrail-session=made-up"})
    assert posted.status_code == 200
    assert posted.json()["principal"] is None


def test_session_refusals_are_in_the_metrics(c: TestClient) -> None:
    sign_in(c, "nurse.ada")
    c.post(PROBE)
    c.get(PROBE, headers={"cookie": "vitaltrail-session=made-up"})
    assert c.get("/metrics").status_code == 401, "the made-up cookie ended the session"
    sign_in(c, "admin.eve")
    metrics = c.get("/metrics").text
    assert 'vitaltrail_auth_refusals_total{reason="csrf_missing",source="web"} 1.0' in metrics
    assert (
        'vitaltrail_auth_refusals_total{reason="session_unknown",source="sessions"} 1.0' in metrics
    )
