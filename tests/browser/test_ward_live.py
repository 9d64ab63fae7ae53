"""The ward page on the whole live system, as issue 11's "Done when" asks: simulated wearables
publish through Mosquitto to the ingestor, the API's alert engine runs every second, and the
clinician watches the ward in chromium, signed in on the sign-in page.

- A patient deteriorates (the simulator's sepsis-like course, compressed to seconds): the
  urgent NEWS2 alert is on the page within 10 s of the reading whose score first reached 5,
  that reading found by replaying the store's readings through the same NEWS2 score.
- A wristband goes silent: no more data arrives from it, yet the page shows its stale alert
  and greys its vitals, on the engine's clock alone.

One system and one page serve both tests; a MutationObserver, installed before the page
loads, notes when each alert first shows in the list (the browser's clock, the machine's).
Whether alerts come by the stream (contract 2) or by polling, the bounds hold.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from clinical.alerts import rank
from clinical.documented import DocumentedStore
from clinical.news2 import MEASURED_LOINC, Measured, Tier, score
from devices.publisher import BrokerAddress
from devices.vitals import BODY_TEMPERATURE, HEART_RATE, RESPIRATORY_RATE, SPO2
from ingest.store import wall_clock_ms
from simulator.scenarios import Scenario, apply_scenarios
from simulator.ward import build_ward
from tests.browser.test_dashboard_page import CHROMIUM_ARGS
from tests.browser.test_end_to_end import alert_stream_served, demo_passwords, sign_in
from tests.browser.test_patient_page import WIDER_THAN_VIEWPORT, watch
from tests.live_system import LiveSystem
from tests.servers import Mosquitto
from tests.stack import settings_for, wait_for
from vitaltrail.demo import demo_fleet
from vitaltrail.demo_accounts import CLINICIAN
from vitaltrail.mosquitto import free_port
from vitaltrail.runtime import open_store
from vitaltrail.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# build_ward(6, seed=7): patients 001-003, each with a wristband (phase 0) and a cuff.
DEVICES, SEED = 6, 7
DETERIORATING, SILENT = "patient-002", "patient-003"
SILENT_BAND = f"{SILENT}-band"
# The simulated patient's physiology lags its course by several seconds: compressed to 16 s
# from 2 s in, NEWS2 reaches 5 about 20 s after the start (checked by the replay below).
DETERIORATION = Scenario("deterioration", DETERIORATING, 2.0, 16.0)
SILENCE_S = 4.0
SILENCE = Scenario("silent-device", SILENT_BAND, SILENCE_S)
# One short limit, for the alert engine, NEWS2 and the devices alike: a vital quiet this long
# raises its stale alert and is greyed on its tile, a device its device-silent alert (the
# cuffs' pressure and the bands' minutely temperature go stale on every tile too, and the
# cuffs, measuring every 15 minutes, go silent: the ward is seconds old).
STALE_S = 6.0
PUBLISH_S = 60.0  # longer than the tests watch: the ward keeps publishing, closing stops it
URGENT_WITHIN_S = 10.0  # the bound, reading to page
ENGINE_S = 1.0  # alerts_interval_s
POLL_S = 5.0  # the page polls /api/v1/alerts this often when the stream is absent
STALE_CLASS = re.compile(r"\bstale\b")
BAND_CODES = (HEART_RATE.code, SPO2.code, RESPIRATORY_RATE.code, BODY_TEMPERATURE.code)

# Every alert the list shows, with when it first showed (Date.now()), keyed by patient,
# severity and message; the list is redrawn on each change, so the first sighting is kept.
OBSERVE_ALERTS = """
(() => {
  window.__alertsSeen = {};
  const note = () => {
    for (const li of document.querySelectorAll('.alerts li.alert')) {
      const patient = li.querySelector('.alert-patient')?.textContent ?? '';
      const message = li.querySelector('.alert-message')?.textContent ?? '';
      const key = `${patient}|${li.dataset.severity}|${message}`;
      if (!(key in window.__alertsSeen)) {
        window.__alertsSeen[key] = {patient, severity: li.dataset.severity, message,
                                    seen_ms: Date.now()};
      }
    }
  };
  new MutationObserver(note).observe(document, {childList: true, subtree: true});
})();
"""


@dataclass(frozen=True)
class Sighting:
    patient: str
    severity: str
    message: str
    seen_ms: int


@dataclass
class LiveWard:
    system: LiveSystem
    page: Page
    problems: list[str]

    @property
    def settings(self) -> Settings:
        return self.system.settings

    def sightings(self) -> list[Sighting]:
        seen: dict[str, dict[str, Any]] = self.page.evaluate("window.__alertsSeen ?? {}")
        return sorted((Sighting(**s) for s in seen.values()), key=lambda s: s.seen_ms)


@pytest.fixture(scope="module")
def live(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWard]:
    data = tmp_path_factory.mktemp("ward-live") / "data"
    settings = settings_for(
        data,
        mosquitto.port,
        f"t-{uuid.uuid4().hex[:12]}/vitaltrail/v1",
        http_port=free_port(),
        check_workers=0,
        alerts_interval_s=ENGINE_S,
        alerts_stale_after_s=STALE_S,
        device_silent_after_s=STALE_S,
        news2_vital_max_age_s=STALE_S,
    )
    data.mkdir(parents=True)
    ward = build_ward(DEVICES, SEED)
    assert sorted(ward.patients) == ["patient-001", "patient-002", "patient-003"]
    apply_scenarios(ward, [DETERIORATION, SILENCE])
    fleet, accounts = demo_fleet(settings, ward, BrokerAddress(port=mosquitto.port))
    password = demo_passwords(accounts.passwords_file)[CLINICIAN]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        context.add_init_script(OBSERVE_ALERTS)
        page = context.new_page()
        problems = watch(page)
        system = LiveSystem(settings, fleet, PUBLISH_S).start()
        try:
            page.goto(f"{system.url}/")
            sign_in(page, CLINICIAN, password)
            page.wait_for_url(f"{system.url}/")
            yield LiveWard(system, page, problems)
            if not alert_stream_served(system.url):  # the page polls on the stream's 404
                problems[:] = [m for m in problems if "status of 404 " not in m]
            assert problems == []
        finally:
            context.close()
            browser.close()
            system.close()


def band_times(settings: Settings, patient: str) -> list[int]:
    """When each of the patient's wristband samples was taken, in order (from the store)."""
    store = open_store(settings, read_only=True)
    try:
        return sorted(
            b.start_ms
            for code in BAND_CODES
            for b in store.series(patient, code, 0, wall_clock_ms() + 60_000, 1)
        )
    finally:
        store.close()


def _taken_ms(point: tuple[int, str, float]) -> int:
    return point[0]


def crossing_ms(settings: Settings, patient: str) -> int:
    """The time of the first reading after which the patient's NEWS2 reached 5 (urgent),
    replaying the store's readings in time order through the score the engine uses: the
    latest value of each vital as of each reading, the documented values, the same limits."""
    store = open_store(settings, read_only=True)
    try:
        points: list[tuple[int, str, float]] = sorted(
            (b.start_ms, code, b.mean)  # 1 ms buckets: each sample as it was stored
            for code in MEASURED_LOINC.values()
            for b in store.series(patient, code, 0, wall_clock_ms() + 60_000, 1)
        )
    finally:
        store.close()
    documented = DocumentedStore(settings.documented_path)
    try:
        d = documented.latest(patient)
    finally:
        documented.close()
    latest: dict[str, Measured] = {}
    for time_ms, samples in groupby(points, key=_taken_ms):
        latest |= {code: Measured(value, time_ms) for _, code, value in samples}
        observations = d.with_vitals(dict(latest))
        news = score(observations, now_ms=time_ms, max_age_ms=settings.news2_max_age_ms)
        if rank(news.response.tier) >= rank(Tier.MEDIUM):
            return time_ms
    raise AssertionError(f"{patient}'s NEWS2 never reached 5 in the store")


def first_sighting(live: LiveWard, patient: str, wanted: str, severities: set[str]) -> Sighting:
    """Waits for the first alert of the patient whose message starts ``wanted``."""

    def found() -> Sighting | None:
        return next(
            (
                s
                for s in live.sightings()
                if s.patient == patient
                and s.message.startswith(wanted)
                and s.severity in severities
            ),
            None,
        )

    wait_for(lambda: found() is not None or live.system.error is not None, 50, wanted)
    sighting = found()
    assert sighting is not None, live.system.error
    return sighting


def shoot(page: Page, path: Path) -> None:
    """A full-page screenshot, after a check that nothing makes the page scroll sideways."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{scroll} px wide at {width} px: {page.evaluate(WIDER_THAN_VIEWPORT)}"
    page.screenshot(path=str(path), full_page=True)


def test_a_deterioration_is_an_urgent_alert_on_the_page_within_10_s_of_the_reading(
    live: LiveWard, tmp_path: Path
) -> None:
    urgent = first_sighting(live, DETERIORATING, "NEWS2", {"medium", "high"})
    crossed = crossing_ms(live.settings, DETERIORATING)
    delay_s = (urgent.seen_ms - crossed) / 1000
    print(f"urgent NEWS2 alert on the page {delay_s:.1f} s after the reading that reached 5")
    assert 0 < delay_s <= URGENT_WITHIN_S, (urgent, crossed)
    began_ms = band_times(live.settings, DETERIORATING)[0] + DETERIORATION.start_s * 1000
    assert crossed > began_ms  # well until the course began

    # the patient's tile is at the top of the ward, urgent or emergency
    page = live.page
    first = page.locator("#patients [data-patient]").first
    expect(first).to_have_attribute("data-patient", DETERIORATING, timeout=15_000)
    # (the alert may come first: pushed at once, where the ward is refreshed a moment after)
    expect(first).to_have_attribute("data-tier", re.compile("^(medium|high)$"), timeout=15_000)
    tier = first.get_attribute("data-tier")
    expect(first.locator(".score-tier")).to_have_text("Urgent" if tier == "medium" else "Emergency")
    alert = page.locator("#alerts-clinical .alert").filter(has_text=DETERIORATING)
    expect(alert.filter(has_text="NEWS2").first).to_be_visible()
    shoot(page, tmp_path / "ward-live-1920.png")
    page.set_viewport_size({"width": 400, "height": 860})
    expect(first).to_have_attribute("data-patient", DETERIORATING)
    shoot(page, tmp_path / "ward-live-400.png")
    page.set_viewport_size({"width": 1920, "height": 1080})


def test_a_silent_wristband_raises_a_stale_alert_with_no_new_data(live: LiveWard) -> None:
    stale = first_sighting(live, SILENT, "no pulse reading", {"low"})
    times = band_times(live.settings, SILENT)
    silence_ms = times[0] + int(SILENCE_S * 1000)  # a band's first sample is at the start
    last_ms = times[-1]
    # nothing from the band since the silence began, though the others' bands go on
    assert silence_ms - 1000 <= last_ms < silence_ms
    assert max(band_times(live.settings, "patient-001")) > last_ms + STALE_S * 1000
    # the alert came after the limit, by the engine's clock, within a round and a poll
    quiet_s = (stale.seen_ms - last_ms) / 1000
    print(f"stale alert on the page {quiet_s:.1f} s after the band's last reading")
    assert STALE_S < quiet_s <= STALE_S + ENGINE_S + POLL_S + 2, stale
    assert not [
        s for s in live.sightings() if s.message.startswith("no pulse") and s.patient != SILENT
    ]
    # the band itself: a technical alert, device-silent, for it and no other band
    silent = first_sighting(live, SILENT, f"device {SILENT_BAND} silent", {"low"})
    assert STALE_S < (silent.seen_ms - last_ms) / 1000 <= STALE_S + ENGINE_S + POLL_S + 2
    assert not [s for s in live.sightings() if "-band silent" in s.message and s != silent]
    # its tile greys the band's vitals; another patient's pulse is current
    tile = live.page.locator(f'[data-patient="{SILENT}"]')
    for code in (HEART_RATE.code, SPO2.code):
        expect(tile.locator(f'.vital[data-code="{code}"]')).to_have_class(
            STALE_CLASS, timeout=15_000
        )
    fresh = live.page.locator(f'[data-patient="patient-001"] .vital[data-code="{HEART_RATE.code}"]')
    expect(fresh).not_to_have_class(STALE_CLASS)
