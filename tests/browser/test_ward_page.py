"""The ward page in a real browser against a real server: tiles in the API's NEWS2 order, stale
vitals greyed, alerts acknowledged through the trail, and a layout that fits 400 px and 1920 px.

The ward is fixed data (three hours of readings shaped per patient, ending moments ago), so the
screenshots in docs/screenshots/ look the same on every run.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from access.users import UserStore
from clinical.documented import DocumentedStore, Kind, Observation
from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Sample
from devices.registry import DeviceRegistry
from devices.vitals import (
    BODY_TEMPERATURE,
    DIASTOLIC_BP,
    GLUCOSE,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SYSTOLIC_BP,
    Vital,
)
from ingest.mqtt_source import InboundMessage
from tests.api_access import access_events, assign, ward_headers
from tests.browser.test_dashboard_page import browser, served  # noqa: F401 (fixtures)
from tests.stack import now_ms, signed
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MINUTE_MS = 60_000
STEP_MS = 5 * MINUTE_MS
HISTORY_MS = 3 * 60 * MINUTE_MS
NURSE, PASSWORD = "nurse.ada", "correct horse battery staple"
STALE_AFTER_S = 20 * 60  # the test's limit: bed-06's band went quiet 40 minutes ago

# Each patient's vitals three hours ago and now (a deterioration over the last 90 minutes).
Course = dict[Vital, tuple[float, float]]
NORMAL: Course = {
    RESPIRATORY_RATE: (15, 16),
    SPO2: (97, 97),
    SYSTOLIC_BP: (126, 124),
    DIASTOLIC_BP: (78, 76),
    HEART_RATE: (74, 76),
    BODY_TEMPERATURE: (36.8, 36.9),
}
WARD: dict[str, Course] = {
    "bed-01": {**NORMAL, RESPIRATORY_RATE: (14, 8)},  # a single 3: the red flag
    "bed-02": NORMAL,
    "bed-03": {  # an emergency
        RESPIRATORY_RATE: (18, 27),
        SPO2: (97, 90),
        SYSTOLIC_BP: (128, 96),
        DIASTOLIC_BP: (80, 58),
        HEART_RATE: (84, 124),
        BODY_TEMPERATURE: (37.2, 38.7),
    },
    "bed-04": {**NORMAL, GLUCOSE: (142, 118)},
    "bed-05": {**NORMAL, HEART_RATE: (86, 96)},
    "bed-06": NORMAL,  # stale
    "bed-07": {  # urgent
        **NORMAL,
        RESPIRATORY_RATE: (16, 22),
        SPO2: (97, 95),
        HEART_RATE: (78, 104),
        BODY_TEMPERATURE: (37.0, 38.3),
    },
}
QUIET_MS = {"bed-06": 40 * MINUTE_MS}  # how long ago the band last sent
UNDOCUMENTED = {"bed-05"}  # nobody recorded consciousness or oxygen: a partial score
ALARMING: Course = {
    RESPIRATORY_RATE: (30, 30),
    SPO2: (85, 85),
    SYSTOLIC_BP: (85, 85),
    DIASTOLIC_BP: (50, 50),
    HEART_RATE: (135, 135),
    BODY_TEMPERATURE: (39.5, 39.5),
}


def _value(vital: Vital, course: tuple[float, float], t: int, end: int) -> float:
    """Steady, then a straight change over the last 90 minutes, with a small fixed ripple."""
    start, final = course
    progress = min(1.0, max(0.0, 1 - (end - t) / (90 * MINUTE_MS)))
    ripple = math.sin(t / (7 * MINUTE_MS) + len(vital.code)) * (0.1 if final < 50 else 1.0)
    value = start + (final - start) * progress + (ripple if t < end else 0.0)
    return round(value, 1)


@dataclass
class Ward:
    url: str
    settings: Settings
    signers: dict[str, DeviceSigner]


def _ingest(
    settings: Settings,
    signers: dict[str, DeviceSigner],
    courses: dict[str, Course],
    end: int,
    history: bool = True,
) -> None:
    """Readings every 5 minutes for the three hours before ``end`` (or only one at ``end``),
    each signed by the patient's band."""
    runtime = build_ingest(settings)
    messages = []
    for patient, course in courses.items():
        last = end - QUIET_MS.get(patient, 0)
        times = range(end - HISTORY_MS, last + 1, STEP_MS) if history else [end]
        device = f"{patient}-band"
        for t in times:
            samples = tuple(
                Sample(v.code, v.unit, _value(v, c, t, last), t) for v, c in course.items()
            )
            seq = int(t // 1000)
            messages.append(
                InboundMessage(
                    readings_topic(settings.topic_root, device),
                    signed(device, signers[patient], seq, samples),
                    0,
                    1,
                    0,
                    0,
                )
            )
    runtime.ingestor.pipeline.process(messages, now_ms())
    runtime.ingestor.pipeline.seal(now_ms())
    runtime.close()


def _document(settings: Settings) -> None:
    """A nurse's consciousness and oxygen records (before the server starts, so the alerts the
    engine raises read the same on every run)."""
    store = DocumentedStore(settings.documented_path)
    for patient in WARD.keys() - UNDOCUMENTED:
        oxygen = patient == "bed-03"
        observations = (
            Observation(Kind.CONSCIOUSNESS, "A"),
            Observation(Kind.AIR_OR_OXYGEN, oxygen, 4.0 if oxygen else None),
        )
        store.record(patient, observations, "nurse.ada", "clinician", now_ms() - 30 * MINUTE_MS)
    store.close()


@pytest.fixture
def ward(tmp_path: Path) -> Iterator[Ward]:
    settings = Settings(
        data_dir=tmp_path / "data", check_workers=0, news2_vital_max_age_s=STALE_AFTER_S
    )
    signers = {patient: DeviceSigner.generate() for patient in WARD}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = DeviceRegistry(settings.registry_path)
    for patient, signer in signers.items():
        registry.register(f"{patient}-band", patient, signer.key)
    registry.close()
    _ingest(settings, signers, WARD, now_ms() - 20_000)
    _document(settings)
    assign(settings, "ward 3", [NURSE], WARD)
    users = UserStore(settings.access_db_path)
    users.add(NURSE, "clinician", PASSWORD)
    users.close()
    port = free_port()
    sources = replace(data_sources(settings), alerts_interval_s=1.0)
    server = http_server(create_app(sources), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield Ward(f"http://127.0.0.1:{port}", settings, signers)
    server.should_exit = True
    thread.join(10)


def _api(context: BrowserContext, url: str) -> Any:
    answer = context.request.get(url)
    assert answer.ok, answer.text()
    return answer.json()


def _tile_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#patients [data-patient]").evaluate_all(
        "(tiles) => tiles.map((t) => t.dataset.patient)"
    )
    return ids


def _api_ids(context: BrowserContext, url: str) -> list[str]:
    return [p["patient_id"] for p in _api(context, f"{url}/api/v1/ward")["patients"]]


def _fits(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{scroll_width} px wide at {width} px"


def _sparklines_drawn(page: Page) -> None:
    page.wait_for_function(
        """() => [...document.querySelectorAll('.vital:not(.missing):not([hidden]) .spark')]
                 .every((s) => s.querySelector('canvas'))""",
        timeout=15_000,
    )


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
    shutil.copy(SCREENSHOTS / name, tmp_path / name)


def test_the_ward_by_acuity_with_stale_vitals_alerts_and_both_widths(
    ward: Ward,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = ward.url
    # signed in on the sign-in page: the page's POSTs carry the session's CSRF token
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    problems: list[str] = []
    # script errors and CSP refusals (a 401 of /auth/session for a bearer caller, a 404 of
    # the stream where it is not built yet, are answers, not problems)
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{url}/sign-in?next=/")
    page.get_by_label("User name").fill(NURSE)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")

    # the tiles come in the API's order: the emergency first, the routine ones last
    tiles = page.locator("#patients [data-patient]")
    expect(tiles).to_have_count(len(WARD))
    assert _tile_ids(page) == _api_ids(context, url)
    first = tiles.first
    expect(first).to_have_attribute("data-patient", "bed-03")
    expect(first).to_have_attribute("data-tier", "high")
    expect(first.locator(".score-tier")).to_have_text("Emergency")
    expect(first.locator(".red-flag")).to_be_visible()
    expect(first.locator('[data-code="59408-5"] .number')).to_have_text("90")
    link = first.get_by_role("link", name=re.compile("^bed-03 NEWS2 13, Emergency, red flag"))
    expect(link).to_have_attribute("href", "/ward/patients/bed-03")
    expect(first.locator(".documented")).to_contain_text(["ACVPU A", "O₂ 4 L/min"])
    urgent = page.locator('[data-patient="bed-07"]')
    expect(urgent).to_have_attribute("data-tier", "medium")
    expect(urgent.locator(".score-tier")).to_have_text("Urgent")
    single = page.locator('[data-patient="bed-01"]')
    expect(single.locator(".score-tier")).to_have_text("Single 3")
    expect(single.locator('[data-code="9279-1"] .points')).to_have_text("3")
    # nobody documented consciousness or oxygen: partial, and the missing ones named
    partial = page.locator('[data-patient="bed-05"]')
    expect(partial).to_have_attribute("data-partial", "true")
    expect(partial.locator(".badge.partial")).to_have_text("Partial")
    expect(partial.locator(".unrecorded")).to_have_text("Not recorded: Air/O₂, ACVPU")

    # a band quiet for 40 minutes: every vital greyed and marked stale, the fresh ones not
    quiet = page.locator('[data-patient="bed-06"]')
    expect(quiet.locator(".vital.stale")).to_have_count(5)
    expect(quiet.locator('[data-code="8867-4"] .vital-age')).to_have_text("stale 40 min")
    expect(quiet).to_have_attribute("data-partial", "true")
    expect(page.locator('[data-patient="bed-02"] .vital.stale')).to_have_count(0)
    grey = quiet.locator('[data-code="8867-4"] .number').evaluate("e => getComputedStyle(e).color")
    assert grey == "rgb(154, 163, 173)"

    # the engine's alerts appear; acknowledging one records who and when, through the trail
    clinical = page.locator("#alerts-clinical .alert")
    news2 = clinical.filter(has_text="bed-07").filter(has_text="NEWS2")
    expect(news2).to_have_count(1, timeout=10_000)
    expect(page.locator('#alerts-clinical .alert[data-severity="high"]').first).to_be_visible()
    expect(page.locator("#alerts-technical")).to_be_visible()
    alert_id = news2.get_attribute("data-alert")
    before = len(access_events(ward.settings))
    news2.get_by_role("button", name="Acknowledge").click()
    acked = page.locator(f'[data-alert="{alert_id}"]')
    expect(acked).to_have_attribute("data-state", "acknowledged")
    expect(acked.locator(".alert-state")).to_contain_text("Acknowledged by nurse.ada at ")
    (stored,) = [a for a in _api(context, f"{url}/api/v1/alerts") if a["id"] == alert_id]
    assert (stored["state"], stored["acknowledged_by"]) == ("acknowledged", NURSE)
    assert abs(stored["acknowledged_ms"] - now_ms()) < 30_000
    writes = [
        e.access for e in access_events(ward.settings)[before:] if e.access.interaction == "create"
    ]
    assert [(w.route.split("/")[-1], w.patients, w.agent.id) for w in writes] == [
        ("acknowledge", ("bed-07",), NURSE)
    ]
    expect(page.locator("#live")).to_have_attribute("data-state", re.compile("^(live|polling)$"))

    # 1920 px: no sideways scroll, alerts beside the tiles
    _sparklines_drawn(page)
    _fits(page, 1920)
    alerts_box = page.locator(".alerts").bounding_box()
    tiles_box = page.locator("#patients").bounding_box()
    assert alerts_box
    assert tiles_box
    assert alerts_box["x"] > tiles_box["x"] + tiles_box["width"]
    _screenshot(page, "ward-desktop.png", tmp_path)

    # 400 px: one column, the alerts above the tiles, still no sideways scroll
    page.set_viewport_size({"width": 400, "height": 2400})
    page.wait_for_timeout(300)
    _sparklines_drawn(page)
    _fits(page, 400)
    alerts_box = page.locator(".alerts").bounding_box()
    tiles_box = page.locator("#patients").bounding_box()
    assert alerts_box
    assert tiles_box
    assert alerts_box["y"] + alerts_box["height"] <= tiles_box["y"]
    expect(page.locator("#alerts-more")).to_be_visible()
    _screenshot(page, "ward-phone.png", tmp_path)
    first_screen = tmp_path / "ward-phone-first-screen.png"
    page.screenshot(path=str(first_screen), clip={"x": 0, "y": 0, "width": 400, "height": 860})
    # the phone lists the first few alerts of each kind, the rest one tap away
    more = page.locator("#alerts-more")
    expect(more).to_be_visible()
    expect(page.locator("#alerts-clinical .alert:visible")).to_have_count(3)
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    assert page.locator("#alerts-clinical .alert:visible").count() > 3

    # bed-02 takes a turn for the worse: it moves to the top, red, flagged, without a reload
    page.set_viewport_size({"width": 1920, "height": 1080})
    _ingest(ward.settings, ward.signers, {"bed-02": ALARMING}, now_ms(), history=False)
    expect(tiles.first).to_have_attribute("data-patient", "bed-02", timeout=15_000)
    expect(tiles.first).to_have_attribute("data-tier", "high")
    expect(tiles.first.locator(".red-flag")).to_be_visible()
    expect(tiles.first.locator('[data-code="8867-4"] .number')).to_have_text("135")
    assert _tile_ids(page) == _api_ids(context, url)
    assert not problems, problems
    context.close()


def _stream_alert(alert_id: str, patient: str, time_ms: int) -> dict[str, Any]:
    """A raised emergency as contract 2's stream carries it (``AlertOut``)."""
    return {
        "id": alert_id,
        "patient_id": patient,
        "kind": "news2",
        "category": "clinical",
        "parameter": "",
        "severity": "high",
        "state": "raised",
        "message": "NEWS2 9, emergency response",
        "raised_ms": time_ms,
        "updated_ms": time_ms,
        "acknowledged_by": None,
        "acknowledged_ms": None,
        "snoozed_by": None,
        "snoozed_until_ms": None,
        "resolved_ms": None,
    }


def test_the_alert_stream_brings_a_new_emergency_to_the_list_and_says_so(
    served: tuple[str, Settings],  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    """The stream's side is another helper's: here the browser is handed what contract 2
    sends, and the page shows it live, announces it, and says so when the stream drops."""
    url, settings = served
    headers = ward_headers(settings, ["patient-0", "patient-1", "patient-2"])
    context = browser.new_context(extra_http_headers=headers)
    page = context.new_page()
    alert_id = "ab" * 16
    change = {
        "seq": 41,
        "event": "raised",
        "time_ms": now_ms(),
        "by": None,
        "alert": _stream_alert(alert_id, "patient-1", now_ms()),
    }
    body = (
        "retry: 600000\n\n"
        f"id: 41\nevent: alert\ndata: {json.dumps(change)}\n\n"
        f'event: ward\ndata: {{"time_ms": {now_ms()}}}\n\n'
    )
    ward_reads: list[str] = []
    page.on("request", lambda r: ward_reads.append(r.url) if "/api/v1/ward" in r.url else None)

    def stream(route: Route) -> None:
        page.wait_for_timeout(500)  # the page has its first list by then
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    page.route("**/api/v1/alerts/stream", stream)
    page.goto(url)
    raised = page.locator(f'#alerts-clinical [data-alert="{alert_id}"]')
    expect(raised).to_have_attribute("data-severity", "high")
    expect(raised).to_have_class(re.compile(r"\bfresh\b"))
    expect(raised.get_by_role("button", name="Acknowledge")).to_be_visible()
    expect(page.locator("#announce")).to_have_text(
        "New emergency alert for patient-1: NEWS2 9, emergency response"
    )
    # the stream ended: the page says it is reconnecting, and keeps the ward fresh meanwhile
    expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#live")).to_have_text("reconnecting…")
    page.wait_for_timeout(1_500)
    assert len(ward_reads) >= 2  # the first load, and the refresh the ward event asked for
    context.close()


def test_two_alert_loads_in_flight_at_once_leave_no_error(
    served: tuple[str, Settings],  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    """The page's first load of the alerts and the one the stream's opening asks for may
    overlap, the second answered first (seen on the demo: "arrivedWhileLoading is not
    iterable"). Here the first answer is held back until the second has come."""
    url, settings = served
    headers = ward_headers(settings, ["patient-0", "patient-1", "patient-2"])
    context = browser.new_context(extra_http_headers=headers)
    page = context.new_page()
    loads: list[Route] = []

    def alerts(route: Route) -> None:
        loads.append(route)
        if len(loads) == 1:
            return  # held: answered after the second
        route.continue_()
        page.wait_for_timeout(300)
        loads[0].continue_()

    page.route("**/api/v1/alerts", alerts)
    page.route(
        "**/api/v1/alerts/stream",
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body="retry: 600000\n\n"
        ),
    )
    page.goto(url)
    expect(page.locator("#live")).to_have_attribute("data-state", re.compile("live|reconnecting"))
    page.wait_for_timeout(1_000)
    assert len(loads) >= 2
    expect(page.locator("#alert-error")).to_be_hidden()
    context.close()
