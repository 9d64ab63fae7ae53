"""The clinician's patient page (/ward/patients/{id}) in Debian's chromium against the real app:
charts draw from the series, each reading's badge is the browser's own verdict on its proof
bundle (verified when sealed, pending when not, failed naming the check when tampered with or
when the pinned ledger key changed), documenting changes NEWS2, and the page fits a phone.
The screenshots for docs/screenshots/ are taken here, on the same data every run."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Response, Route, expect, sync_playwright

from dashboards.app import create_app
from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRegistry
from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
)
from ingest.mqtt_source import InboundMessage
from tests.api_access import ward_headers
from tests.browser.test_dashboard_page import CHROMIUM_ARGS
from tests.browser.test_patient_page import watch
from tests.servers import serving
from tests.stack import now_ms
from vitaltrail.mosquitto import free_port
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

PATIENT = "patient-0"
DEVICE = "patient-0-band"
READINGS = 60  # one a minute for the last hour; the newest is not sealed yet
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


def samples(i: int, t: int) -> tuple[Sample, ...]:
    """A patient drifting over the hour: pulse and breathing up, SpO2 down (the same every run)."""
    return (
        Sample(HEART_RATE.code, HEART_RATE.unit, 82 + i * 0.45 + (i % 4), t),
        Sample(SPO2.code, SPO2.unit, 97 - i // 16 - (i % 5 == 0), t),
        Sample(RESPIRATORY_RATE.code, RESPIRATORY_RATE.unit, 16 + i // 12 + (i % 3 == 0), t),
        Sample(SYSTOLIC_BP.code, SYSTOLIC_BP.unit, 128 - i // 5 + (i % 4), t),
        Sample(DIASTOLIC_BP.code, DIASTOLIC_BP.unit, 79 - i // 10 + (i % 3), t),
        Sample(BODY_TEMPERATURE.code, BODY_TEMPERATURE.unit, round(37.1 + i * 0.012, 2), t),
    )


def record_ward(data_dir: Path) -> Settings:
    """A patient's band with an hour of readings, all but the newest sealed."""
    settings = Settings(data_dir=data_dir, check_workers=0)
    runtime = build_ingest(settings)
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(settings.registry_path)
    registry.register(DEVICE, PATIENT, signer.key)
    registry.close()
    topic = readings_topic(settings.topic_root, DEVICE)
    start = now_ms() - READINGS * 60_000
    for seq in range(READINGS):
        battery = 82 - seq // 3  # the band reports its battery with each reading: 63 % at the end
        reading = Reading(DEVICE, seq, samples(seq, start + seq * 60_000 + 30_000), battery)
        message = sign1(signer, encode_reading(reading))
        runtime.ingestor.pipeline.process([InboundMessage(topic, message, 0, 1, 0, 0)], now_ms())
        if seq in (READINGS // 2, READINGS - 2):
            runtime.ingestor.pipeline.seal(now_ms())
    runtime.close()
    return settings


@dataclass
class Served:
    url: str
    settings: Settings
    browser: Browser
    headers: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = record_ward(tmp_path_factory.mktemp("ward-patient") / "data")
    headers = ward_headers(settings, [PATIENT])
    server = http_server(create_app(data_sources(settings)), "127.0.0.1", free_port())
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with serving(server) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield Served(f"http://127.0.0.1:{port}", settings, browser, headers)
        browser.close()


DEVICES = f"/api/v1/patients/{PATIENT}/devices"
FAILED_LOAD = "Failed to load resource:"
# Answers the page expects: no device route yet (contract 3), no session with a bearer token,
# no proof bundle for a reading not sealed yet.
EXPECTED = ((404, DEVICES), (401, "/auth/session"), (409, "/proof"))


@dataclass
class Watched:
    """Console and page errors (a CSP violation is one), and the requests that failed but
    were not expected to (each failed request also logs a console line: left to ``failed``)."""

    console: list[str]
    failed: list[str]

    def problems(self) -> list[str]:
        return [p for p in self.console if not p.startswith(FAILED_LOAD)] + self.failed


def open_page(served: Served, width: int, height: int = 1000) -> tuple[Page, Watched]:
    context = served.browser.new_context(
        viewport={"width": width, "height": height}, extra_http_headers=served.headers
    )
    page = context.new_page()
    watched = Watched(watch(page), [])

    def answered(response: Response) -> None:
        expected = any(response.status == s and response.url.endswith(u) for s, u in EXPECTED)
        if response.status >= 400 and not expected:
            watched.failed.append(f"{response.status} {response.url}")

    page.on("response", answered)
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    return page, watched


def bring_into_view(page: Page, rows: str) -> None:
    """Scroll past every row (badges are checked as they come into view), then to the top."""
    found = page.locator(rows)
    for i in range(0, found.count(), 2):
        found.nth(i).scroll_into_view_if_needed()
    page.locator("#latest").scroll_into_view_if_needed()


def badge_of(page: Page, entry: int) -> Locator:
    return page.locator(f'#readings tr[data-index="{entry}"] .badge')


def test_the_page_draws_the_trends_and_verifies_each_reading_itself(served: Served) -> None:
    page, watched = open_page(served, 1920, 1400)
    rows = page.locator("#readings tbody tr[data-index]")
    expect(rows).to_have_count(24)  # 120 observations, five a reading (BP is one)
    newest, sealed = (int(rows.nth(i).get_attribute("data-index") or -1) for i in (0, 5))
    badge_of(page, sealed).scroll_into_view_if_needed()  # checked as they come into view
    expect(badge_of(page, sealed)).to_have_text("✓ verified", timeout=15_000)
    expect(badge_of(page, newest)).to_have_text("◷ pending")
    newest_values = rows.first.locator(".values")
    expect(newest_values).to_have_text("HR 112 /minSpO₂ 94 %RR 20 /minBP 120/76 mmHgTemp 37.8 °C")
    heart = page.locator('#charts .chart[data-code="8867-4"]')
    expect(heart.locator("canvas")).to_have_count(1)
    assert int(heart.get_attribute("data-points") or 0) >= 55
    news2 = page.locator("#news2-chart")
    expect(news2.locator("canvas")).to_have_count(1)
    assert int(news2.get_attribute("data-points") or 0) > 0
    expect(page.locator("#news2-flags")).to_contain_text("Missing: air or oxygen, consciousness")
    # the devices route: the band, its key, when it was last heard and its battery
    band = page.locator(f'#devices .device[data-device="{DEVICE}"]')
    expect(band.locator(".chip")).to_have_text("key active")
    expect(band).to_contain_text(f"{82 - (READINGS - 1) // 3} %")
    # the fingerprint an operator checks (docs/operations.md) is the pinned key's
    pub = served.settings.ledger_key_path.with_suffix(".pub").read_text().strip()
    expect(page.locator("#key-pin")).to_contain_text(hashlib.sha256(pub.encode()).hexdigest()[:16])
    page.locator('[data-window="24h"]').click()
    expect(heart).to_have_attribute("data-points", re.compile(r"^[45]$"))  # 15-min buckets
    page.locator('[data-window="1h"]').click()
    expect(heart).to_have_attribute("data-points", str(READINGS))
    bring_into_view(page, "#readings tbody tr")
    expect(page.locator(".badge.checking")).to_have_count(0, timeout=15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "patient-desktop.png"), full_page=True)
    assert watched.problems() == []
    page.context.close()


def test_a_tampered_bundle_fails_naming_the_check(served: Served) -> None:
    def flip_device_signature(route: Route) -> None:
        response = route.fetch()
        if response.status != 200:
            route.fulfill(response=response)
            return
        bundle = json.loads(response.text())
        entry = bytearray(base64.b64decode(bundle["reading"]["entry"]))
        entry[-1] ^= 0x80  # the last byte of the device's Ed25519 signature
        bundle["reading"]["entry"] = base64.b64encode(bytes(entry)).decode()
        route.fulfill(response=response, body=json.dumps(bundle))

    context = served.browser.new_context(extra_http_headers=served.headers)
    context.route("**/api/v1/readings/*/proof", flip_device_signature)
    page = context.new_page()
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    sealed = page.locator("#readings tbody tr[data-index]").nth(3).locator(".badge")
    sealed.scroll_into_view_if_needed()  # badges are checked as they come into view
    expect(sealed).to_have_text("✗ failed: device signature", timeout=15_000)
    context.unroute_all(behavior="ignoreErrors")  # the other rows' bundles still in flight
    context.close()


def test_a_changed_ledger_key_fails_every_badge(served: Served) -> None:
    context = served.browser.new_context(extra_http_headers=served.headers)
    context.add_init_script(
        "localStorage.setItem('vitaltrail.ledger-key', 'other.example/log+00000000+AAAA')"
    )
    page = context.new_page()
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    expect(page.locator("#key-pin")).to_contain_text("ledger key changed")
    sealed = page.locator("#readings tbody tr[data-index]").nth(3).locator(".badge")
    sealed.scroll_into_view_if_needed()  # badges are checked as they come into view
    expect(sealed).to_have_text("✗ failed: ledger key", timeout=15_000)
    expect(sealed).to_have_attribute("title", "ledger key changed")
    context.close()


def test_witnesses_weakened_since_they_were_pinned_fail_every_badge(served: Served) -> None:
    """A server that drops a witness or lowers the quorum (to 0: no witness checked at all)
    is refused; one that adds a witness is pinned from then on."""
    pinned = '{"keys": ["witness.example/w1+00000000+AAAA"], "quorum": 1}'
    context = served.browser.new_context(extra_http_headers=served.headers)
    context.add_init_script(f"localStorage.setItem('vitaltrail.witnesses', '{pinned}')")
    page = context.new_page()
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    expect(page.locator("#key-pin")).to_contain_text("witnesses changed")
    sealed = page.locator("#readings tbody tr[data-index]").nth(3).locator(".badge")
    sealed.scroll_into_view_if_needed()
    expect(sealed).to_have_text("✗ failed: witnesses", timeout=15_000)
    context.close()
    fresh = served.browser.new_context(extra_http_headers=served.headers)
    page = fresh.new_page()
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    expect(page.locator("#key-pin")).to_contain_text("ledger key")
    stored = page.evaluate("localStorage.getItem('vitaltrail.witnesses')")
    assert stored == '{"keys":[],"quorum":0}'  # this ledger has none: pinned as it is
    fresh.close()


def test_documenting_changes_news2_and_the_page_fits_a_phone(served: Served) -> None:
    page, watched = open_page(served, 400, 900)
    total = page.locator("#news2-total")
    expect(total).not_to_have_text("–", timeout=10_000)
    before = total.text_content()
    page.locator('label:has(input[name="consciousness"][value="V"])').click()
    page.locator('label:has(input[name="oxygen"][value="oxygen"])').click()
    page.locator('input[name="flow"]').fill("2")
    page.locator('input[name="device"]').fill("nasal cannula")
    page.locator("#document button[type=submit]").click()
    expect(page.locator("#document-status")).to_contain_text("Recorded")
    # pulse 111.6: 2, SpO2 94: 1 (scale 1), RR 20, BP 120, 37.8 °C: 0; now V: 3, oxygen: 2
    assert before == "3+"
    expect(total).to_have_text("8")
    expect(page.locator("#news2")).to_have_class("news2 tier-high")
    expect(page.locator('#documented-now dd[data-kind="air_or_oxygen"]')).to_contain_text(
        "Oxygen (2 L/min, nasal cannula)"
    )
    rows = page.locator("#readings tbody tr")
    expect(rows.nth(7)).to_be_visible()
    expect(rows.nth(8)).to_be_hidden()  # a phone shows eight readings until asked for all
    bring_into_view(page, "#readings tbody tr:visible")
    expect(page.locator(".badge.checking:visible")).to_have_count(0, timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    page.screenshot(path=str(SCREENSHOTS / "patient-phone.png"), full_page=True)
    page.locator("#readings-more").click()
    expect(rows.nth(23)).to_be_visible()
    assert watched.problems() == []
    page.context.close()


def test_the_device_card_shows_what_the_devices_route_answers(served: Served) -> None:
    """Contract 3's answer (its route is another helper's): battery, last seen, key status."""
    seen = now_ms() - 200_000
    answer = {
        "patient_id": PATIENT,
        "devices": [
            {
                "device_id": DEVICE,
                "key_status": "revoked",
                "key_thumbprint": "Xq3b9" + "a" * 38,
                "registered_ms": seen - 86_400_000,
                "last_seen_ms": seen,
                "battery_pct": 18,
                "battery_time_ms": seen,
                "signature_failures": 3,
                "last_failure_ms": seen,
                "last_failure_reason": "bad-signature",
                "silent": True,
                "battery_low": True,
            }
        ],
    }
    context = served.browser.new_context(extra_http_headers=served.headers)
    context.route(f"**{DEVICES}", lambda route: route.fulfill(json=answer))
    page = context.new_page()
    page.goto(f"{served.url}/ward/patients/{PATIENT}")
    card = page.locator(f'#devices .device[data-device="{DEVICE}"]')
    expect(card).to_have_class("device silent")
    expect(card.locator(".chip")).to_have_text("key revoked")
    expect(card.locator(".meter")).to_have_class("meter low")
    expect(card).to_contain_text("18 %")
    expect(card).to_contain_text("(3 min ago)")
    expect(card).to_contain_text("3 (last bad-signature)")
    context.close()
