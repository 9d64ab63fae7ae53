"""Signing in through the page in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from access.care_teams import CareTeamStore
from access.users import UserStore
from tests.browser.test_dashboard_page import browser, served  # noqa: F401 (fixtures)
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


def watch_csp(page: Page, refused: list[str]) -> None:
    """Collect in ``refused`` the console's reports of anything the page's Content Security
    Policy refused (an inline script or style, a script from elsewhere)."""

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", seen)


def test_a_clinician_signs_in_on_the_page_and_lands_on_the_ward(
    served: tuple[str, Settings],  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, settings = served
    users = UserStore(settings.access_db_path)
    users.add("nurse.ada", "clinician", PASSWORD)
    users.close()
    teams = CareTeamStore(settings.access_db_path)
    teams.create("ward 3")
    teams.add_member("ward 3", "nurse.ada")
    for patient in ("patient-0", "patient-1", "patient-2"):
        teams.add_patient("ward 3", patient)
    teams.close()

    # the ward page sends whoever is not signed in to the sign-in page, and back after it
    stranger = browser.new_context()
    away = stranger.new_page()
    away.goto(f"{url}/")
    away.wait_for_url(f"{url}/sign-in?next=%2F")
    stranger.close()

    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    refused: list[str] = []
    watch_csp(page, refused)
    page.goto(f"{url}/sign-in")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("User name")).to_be_focused()
    page.screenshot(path=str(tmp_path / "sign-in-1920.png"), full_page=True)

    # a wrong password: the page says so, keeps the name, and no session cookie is set
    page.get_by_label("User name").fill("nurse.ada")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("User name")).to_have_value("nurse.ada")
    assert not [c for c in context.cookies() if c["name"] == "vitaltrail-session"]
    page.screenshot(path=str(tmp_path / "sign-in-refused-1920.png"), full_page=True)

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    expect(page.locator("#patients [data-patient]")).to_have_count(3)
    expect(page.locator("#who")).to_have_text("nurse.ada (clinician)")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.screenshot(path=str(tmp_path / "ward-signed-in-1920.png"), full_page=True)
    session = next(c for c in context.cookies() if c["name"] == "vitaltrail-session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # http://127.0.0.1: the one-machine demo
    assert page.evaluate("document.cookie") == ""  # no script can read it
    who = page.request.get(f"{url}/auth/session")
    assert who.status == 200
    assert who.json()["user"] == "nurse.ada"

    # back on the sign-in page: who is signed in, and a sign-out button that works
    page.goto(f"{url}/sign-in")
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
    expect(page.locator(".signed-in")).to_contain_text("nurse.ada")
    page.screenshot(path=str(tmp_path / "signed-in-1920.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/sign-in?signed-out")
    expect(page.get_by_role("alert")).to_have_text("You have signed out.")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.screenshot(path=str(tmp_path / "signed-out-1920.png"), full_page=True)
    assert page.request.get(f"{url}/auth/session").status == 401
    # the old cookie, replayed by hand, opens nothing: the session was revoked on the server
    replay = browser.new_context()
    replay.add_cookies(
        [{"name": session["name"], "value": session["value"], "url": url, "sameSite": "Strict"}]
    )
    assert replay.request.get(f"{url}/auth/session").status == 401
    replay.close()
    context.close()

    narrow = browser.new_context(viewport={"width": 400, "height": 860})
    small = narrow.new_page()
    watch_csp(small, refused)
    small.goto(f"{url}/sign-in")
    expect(small.get_by_role("button", name="Sign in")).to_be_visible()
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways at 400 px ({width} px wide)"
    small.screenshot(path=str(tmp_path / "sign-in-400.png"), full_page=True)
    narrow.close()

    # signing out from the ward page itself (its form posts the session's CSRF token)
    again = browser.new_context(viewport={"width": 400, "height": 860})
    ward = again.new_page()
    watch_csp(ward, refused)
    ward.goto(f"{url}/sign-in?next=/")
    ward.get_by_label("User name").fill("nurse.ada")
    ward.get_by_label("Password").fill(PASSWORD)
    ward.get_by_role("button", name="Sign in").click()
    ward.wait_for_url(f"{url}/")
    expect(ward.locator("#patients [data-patient]")).to_have_count(3)
    ward.screenshot(path=str(tmp_path / "ward-signed-in-400.png"), full_page=True)
    ward.get_by_role("button", name="Sign out").click()
    ward.wait_for_url(f"{url}/sign-in?signed-out")
    assert ward.request.get(f"{url}/auth/session").status == 401
    again.close()
    assert refused == [], refused
