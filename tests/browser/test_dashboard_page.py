"""The browser fixtures the page tests share (Debian's chromium driven by Playwright), and the
ward page refusing whoever may not see a patient (the ward itself: test_ward_page.py)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from dashboards.app import create_app
from tests.api_access import Tokens, assign
from tests.populated import populate
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = populate(tmp_path / "data", patients=3, readings=5)
    port = free_port()
    server = http_server(create_app(data_sources(settings)), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_without_a_token_the_ward_page_shows_no_patient(
    served: tuple[str, Settings], browser: Browser
) -> None:
    url, settings = served
    # nobody signed in: the page goes to the sign-in page (and would come back after it)
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_url(f"{url}/sign-in?next=%2F")
    assert page.request.get(f"{url}/api/v1/patients").status == 401
    context.close()
    # another ward's clinician: the ward listing answers, with nobody in it
    assign(settings, "other ward", ["dr-other"], ["patient-7"])
    tokens = Tokens(settings)
    others = tokens.headers("dr-other", "clinician")
    tokens.close()
    context = browser.new_context(extra_http_headers=others)
    page = context.new_page()
    with page.expect_response("**/api/v1/ward") as answer:
        page.goto(url)
    assert answer.value.status == 200
    assert answer.value.json()["patients"] == []
    expect(page.locator("#ledger")).to_contain_text("18 entries")
    expect(page.locator("#patients [data-patient]")).to_have_count(0)
    expect(page.locator("#patients")).to_contain_text("No patients")
    context.close()
