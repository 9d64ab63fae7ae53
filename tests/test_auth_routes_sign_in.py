"""Password sign-in over HTTP: the page, good and bad passwords, the account lock, the
per-address limit, the cookie's flags, and the sign-in form's own CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import VerifyMismatchError
from fastapi.testclient import TestClient

from access.users import UserStore
from tests.auth_app import (
    PASSWORD,
    AuthApp,
    add_users,
    auth_app,
    client,
    sign_in,
    sign_in_token,
)
from tests.populated import populate
from vitaltrail.settings import Settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return populate(tmp_path_factory.mktemp("ward") / "data", patients=1, readings=1)


@pytest.fixture
def app(settings: Settings, tmp_path: Path) -> AuthApp:
    add_users(
        tmp_path,
        ("nurse.ada", "clinician", None),
        ("nurse.bo", "clinician", None),
        ("nurse.cy", "clinician", None),
        ("pat.dee", "patient", "patient-0"),
    )
    return auth_app(settings, tmp_path)


@pytest.fixture
def c(app: AuthApp) -> Iterator[TestClient]:
    with client(app) as opened:
        yield opened


def set_cookies(response: object) -> dict[str, str]:
    """Each Set-Cookie header of a response, by cookie name."""
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {h.split("=", 1)[0]: h for h in headers}


def alert(page: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', page)
    assert found, "the page shows no alert"
    return found[1]


def test_the_page_is_a_form_with_no_script_or_inline_style(c: TestClient) -> None:
    page = c.get("/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert "<script" not in html
    assert "style=" not in html
    assert "<style" not in html
    assert 'method="post" action="/auth/sign-in"' in html
    assert 'autocomplete="current-password"' in html
    token = sign_in_token(html)
    cookie = set_cookies(page)["vitaltrail-sign-in"]
    assert f"vitaltrail-sign-in={token};" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


def test_a_good_password_opens_a_session_and_goes_on(c: TestClient, app: AuthApp) -> None:
    answer = sign_in(c, "nurse.ada", next="/patients/patient-0?tab=vitals")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/patients/patient-0?tab=vitals"
    cookies = set_cookies(answer)
    session = cookies["vitaltrail-session"]
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Path=/" in session
    assert "Secure" not in session  # plain HTTP to 127.0.0.1: the one-machine demo
    assert "Max-Age" not in session  # it ends with the browser (or sooner, on the server)
    assert "Max-Age=0" in cookies["vitaltrail-sign-in"]  # the form's token is spent
    assert app.state(c).sessions.store.count() == 1
    who = c.get("/auth/session").json()
    assert (who["user"], who["roles"], who["patient"]) == ("nurse.ada", ["clinician"], None)


def test_names_are_not_case_sensitive_at_the_door(c: TestClient) -> None:
    assert sign_in(c, "  Nurse.Ada ").status_code == 303


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://[::1]:8000", False),
        ("http://ward.example", True),  # plain HTTP elsewhere: the browser will not keep it
        ("https://ward.example", True),
    ],
)
def test_the_cookie_is_secure_outside_localhost(app: AuthApp, base_url: str, secure: bool) -> None:
    with client(app, base_url) as c:
        page = c.get("/sign-in")
        name = "__Host-vitaltrail-sign-in" if secure else "vitaltrail-sign-in"
        assert ("Secure" in set_cookies(page)[name]) is secure
        token = sign_in_token(page.text)
        form = {"username": "nurse.ada", "password": PASSWORD, "csrf_token": token}
        answer = c.post("/auth/sign-in", data=form, headers={"cookie": f"{name}={token}"})
        assert answer.status_code == 303, answer.text
        session = set_cookies(answer)[
            "__Host-vitaltrail-session" if secure else "vitaltrail-session"
        ]
        assert ("; Secure" in session) is secure
        assert "HttpOnly" in session
        assert "Domain" not in session  # __Host-: this host only


@pytest.mark.parametrize("name", ["nurse.ada", "nobody.here"])
def test_a_wrong_password_or_unknown_name_gets_one_answer(
    c: TestClient, app: AuthApp, name: str
) -> None:
    answer = sign_in(c, name, "not the password at all")
    assert answer.status_code == 401
    assert alert(answer.text) == "Wrong user name or password."
    assert "vitaltrail-session" not in set_cookies(answer)
    assert f'value="{name}"' in answer.text  # the name stays in the form
    assert app.state(c).issuer.refusals["sign_in_invalid_credentials"] == 1
    assert app.state(c).sessions.store.count() == 0


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    c: TestClient, app: AuthApp
) -> None:
    for _ in range(5):
        assert sign_in(c, "nurse.ada", "not the password at all").status_code == 401
    locked = sign_in(c, "nurse.ada")
    assert locked.status_code == 429
    assert "paused" in alert(locked.text)
    assert "vitaltrail-session" not in set_cookies(locked)
    assert app.state(c).issuer.refusals["sign_in_rate_limited"] == 1
    assert sign_in(c, "nurse.bo").status_code == 303  # other accounts are untouched
    app.clock.now += 901  # the lock lasts 15 minutes
    assert sign_in(c, "nurse.ada").status_code == 303


def test_a_disabled_account_is_refused(c: TestClient, app: AuthApp) -> None:
    app.state(c).issuer.users.set_disabled("nurse.ada")
    answer = sign_in(c, "nurse.ada")
    assert answer.status_code == 403
    assert "disabled" in alert(answer.text)
    assert app.state(c).issuer.refusals["sign_in_disabled"] == 1


def test_one_address_cannot_lock_every_account(app: AuthApp) -> None:
    """Ten attempts per address per five minutes: enough to lock two accounts, not the third,
    and refused before any password is checked."""
    with client(app, client=("203.0.113.7", 40000)) as guesser:
        for name in ("nurse.ada", "nurse.bo"):
            for _ in range(5):
                assert sign_in(guesser, name, "guessing wildly").status_code == 401
        limited = sign_in(guesser, "nurse.cy", "guessing wildly")
        assert limited.status_code == 429
        assert "from this address" in alert(limited.text)
        assert 1 <= int(limited.headers["retry-after"]) <= 300
        state = app.state(guesser)
        assert state.refusals["sign_in_address_limited"] == 1
        assert state.issuer.refusals["sign_in_invalid_credentials"] == 10
        assert state.issuer.refusals["sign_in_rate_limited"] == 0  # not even tried
    with client(app, client=("198.51.100.2", 40000)) as nurse:
        assert sign_in(nurse, "nurse.cy").status_code == 303
        assert sign_in(nurse, "nurse.ada").status_code == 429  # locked by the guesser
    app.clock.now += 301
    with client(app, client=("203.0.113.7", 40000)) as later:
        assert sign_in(later, "pat.dee").status_code == 303  # the window has passed


def test_a_form_without_the_pages_token_is_refused(c: TestClient, app: AuthApp) -> None:
    """Another site cannot sign this browser in to an account of its choosing."""
    form = {"username": "nurse.ada", "password": PASSWORD}
    assert c.post("/auth/sign-in", data=form).status_code == 403
    c.get("/sign-in")  # the browser holds a token cookie; the forged form cannot know it
    forged = c.post("/auth/sign-in", data={**form, "csrf_token": "guessed"})
    assert forged.status_code == 403
    assert "expired" in alert(forged.text)
    assert "vitaltrail-session" not in set_cookies(forged)
    assert app.state(c).refusals["sign_in_form_expired"] == 2
    assert app.state(c).sessions.store.count() == 0


def test_a_body_that_is_not_a_form_is_refused(c: TestClient, app: AuthApp) -> None:
    answer = c.post("/auth/sign-in", json={"username": "nurse.ada", "password": PASSWORD})
    assert answer.status_code == 400
    assert app.state(c).refusals["sign_in_form_not_form"] == 1


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/ward", "/ward"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("/" + "a" * 600, "/"),
    ],
)
def test_sign_in_goes_on_within_this_site_only(c: TestClient, target: str, goes_to: str) -> None:
    answer = sign_in(c, "nurse.ada", next=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == goes_to


def test_a_patient_goes_on_to_their_own_page_rather_than_the_ward(c: TestClient) -> None:
    """The ward overview is a clinician's page: a patient sent there (the default) goes to
    /me, where they decide who may see their data and see who did; another page asked for
    is kept, and a clinician still goes to the ward."""
    assert sign_in(c, "nurse.ada").headers["location"] == "/"
    assert sign_in(c, "pat.dee", next="/me?from=mail").headers["location"] == "/me?from=mail"
    assert sign_in(c, "pat.dee", next="/").headers["location"] == "/me"
    assert sign_in(c, "pat.dee").headers["location"] == "/me"
    # signed in, the sign-in page's Continue button goes there too
    assert '<a class="button primary" href="/me">Continue</a>' in c.get("/sign-in").text


def test_the_next_page_survives_the_page_and_a_wrong_password(c: TestClient) -> None:
    page = c.get("/sign-in", params={"next": "/patients/patient-0"})
    assert 'name="next" value="/patients/patient-0"' in page.text
    assert 'name="next" value="/"' in c.get("/sign-in?next=//evil.example").text
    wrong = sign_in(c, "nurse.ada", "not the password at all", next="/patients/patient-0")
    assert 'name="next" value="/patients/patient-0"' in wrong.text


def test_hostile_names_are_escaped_on_the_page(c: TestClient) -> None:
    answer = sign_in(c, '<script>alert("x")</script>', "not the password at all")
    assert "<script>" not in answer.text
    assert "&lt;script&gt;" in answer.text


def test_signing_in_again_replaces_the_session(c: TestClient, app: AuthApp) -> None:
    """A new id at every sign-in: a session id planted before cannot be taken over after."""
    sign_in(c, "nurse.ada")
    first = c.cookies["vitaltrail-session"]
    sign_in(c, "nurse.bo")
    assert c.cookies["vitaltrail-session"] != first
    assert app.state(c).sessions.store.get(first) is None
    assert app.state(c).sessions.store.count() == 1
    assert c.get("/auth/session").json()["user"] == "nurse.bo"


def test_a_signed_in_visitor_sees_who_they_are_and_can_sign_out(c: TestClient) -> None:
    sign_in(c, "pat.dee")
    page = c.get("/sign-in").text
    assert "You are signed in as <strong>pat.dee</strong>" in page
    assert re.search(r'class="sign-in-form" hidden', page)
    token = re.search(
        r'action="/auth/sign-out">\s*<input type="hidden" name="csrf_token" '
        r'value="([^"]+)"',
        page,
    )
    assert token
    assert c.post("/auth/sign-out", data={"csrf_token": token[1]}).status_code == 303
    assert c.get("/auth/session").status_code == 401
    documented = c.get("/openapi.json").json()["paths"]["/auth/session"]["get"]["responses"]
    assert "401" in documented  # the route's own answer: it is public, no token is checked


def test_an_unknown_name_costs_a_real_argon2_check(tmp_path: Path) -> None:
    """The store checks an unknown name's password against a hash of random bytes in its own
    parameters (made without hashing, so opening the store is instant): a real verification,
    as slow as a known name's, that nothing matches."""
    hasher = PasswordHasher()
    store = UserStore(tmp_path / "access.db", hasher=hasher)
    dummy = store._dummy_hash
    store.close()
    assert extract_parameters(dummy) == extract_parameters(hasher.hash("any password at all"))
    other = UserStore(tmp_path / "other.db", hasher=hasher)
    assert dummy != other._dummy_hash  # a fresh salt each time
    other.close()
    with pytest.raises(VerifyMismatchError):  # a mismatch, not an unreadable hash
        hasher.verify(dummy, "not a password anyone has")
