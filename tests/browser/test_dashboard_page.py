"""The ward page in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.registry import DeviceRegistry
from ingest.mqtt_source import InboundMessage
from tests.api_access import Tokens, assign, ward_headers
from tests.populated import populate
from tests.stack import now_ms, signed, vitals
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import build_ingest, data_sources
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


def test_the_ward_page_lists_patients_and_follows_new_readings(
    served: tuple[str, Settings], browser: Browser, tmp_path: Path
) -> None:
    url, settings = served
    # Signed in as a clinician of the three patients' care team. Until the sign-in page gives
    # the browser its session cookie, the page's requests carry the clinician's bearer token.
    headers = ward_headers(settings, ["patient-0", "patient-1", "patient-2"])
    page = browser.new_context(extra_http_headers=headers).new_page()
    page.goto(url)
    rows = page.locator("#patients tr")
    expect(rows).to_have_count(3)
    first = page.locator('tr[data-patient="patient-0"] td')
    expect(first.nth(0)).to_have_text("patient-0")
    expect(first.nth(1)).to_have_text("74")  # heart rate
    expect(first.nth(4)).to_have_text("36.9")  # temperature
    expect(page.locator("#ledger")).to_contain_text("18 entries")
    page.screenshot(path=str(tmp_path / "ward.png"), full_page=True)

    # A new, alarming reading arrives (from a second device of the same patient):
    # the page shows it without a reload.
    runtime = build_ingest(settings)
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(settings.registry_path)
    registry.register("patient-0-spare", "patient-0", signer.key)
    registry.close()
    message = signed("patient-0-spare", signer, 0, vitals(now_ms(), hr=133))
    topic = readings_topic(settings.topic_root, "patient-0-spare")
    runtime.ingestor.pipeline.process([InboundMessage(topic, message, 0, 1, 0, 0)], now_ms())
    runtime.close()
    heart = first.nth(1)
    expect(heart).to_have_text("133", timeout=10_000)
    expect(heart).to_have_class("alert")

    # Each value links to the signed reading it came from.
    heart.locator("a").click()
    expect(page.locator("body")).to_contain_text('"device_id":"patient-0-spare"')


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
    with page.expect_response("**/api/v1/patients") as answer:
        page.goto(url)
    assert answer.value.status == 200
    assert answer.value.json() == []
    expect(page.locator("#ledger")).to_contain_text("18 entries")
    expect(page.locator("#patients tr[data-patient]")).to_have_count(0)
    context.close()
