"""End to end, as people use it, on real servers: simulated wearables sign their readings and
publish them through Mosquitto to the ingestor; the API runs with sign-in as `vitaltrail demo`
sets it up (its clinician, patient and admin accounts and care team) and trusts the hospital's
OpenID provider (npm oidc-provider) besides its own issuer; Debian's chromium signs people in.

A clinician sees their care team's patients, with the readings that came through the broker,
and no one else; a patient gives an app access on their page, the app reads, the patient
withdraws, the app is refused, and the patient sees all of that - and a clinician's
break-glass, with its reason - in their access log."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc.jwk import ECKey
from playwright.sync_api import Browser, Page, expect

from access.apps import AppStore
from devices.publisher import BrokerAddress, PublisherConfig
from devices.vitals import BODY_TEMPERATURE, HEART_RATE, SYSTOLIC_BP
from simulator.fleet import Fleet
from simulator.ward import build_ward
from tests.api_access import bearer, token_request
from tests.browser.test_dashboard_page import browser  # noqa: F401 (fixture)
from tests.browser.test_patient_page import WIDER_THAN_VIEWPORT, watch
from tests.live_system import LiveSystem
from tests.oidc.provider import OidcProvider
from tests.servers import Mosquitto
from tests.stack import settings_for, wait_for
from vitaltrail.access_commands import open_directory
from vitaltrail.demo import register_ward
from vitaltrail.demo_accounts import (
    CLINICIAN,
    DEMO_ACTOR,
    DEMO_PATIENT,
    PATIENT,
    assign_demo_ward,
    ensure_demo_accounts,
)
from vitaltrail.mosquitto import free_port
from vitaltrail.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# build_ward(8, seed=2): patients 001-004, each with a band (every second) and a cuff.
DEVICES, SEED, PUBLISH_S = 8, 2, 3.0
DEMO_WARD = ("patient-001", "patient-002")  # the demo clinician's care team
EAST_WARD = ("patient-003", "patient-004")  # another ward's, with its own clinician
EAST_CLINICIAN, EAST_PASSWORD = "dr-east", "night shift on the east ward"
APP_ID, APP_NAME, APP_SCOPES = "telemed-1", "Telemed One", "system/Observation.rs"
GLASS = "Collapsed in the corridor; her care team is not reachable"
BLOOD_PRESSURE = re.compile(r"^\d+/\d+$")
SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"  # copied there only if it exists


@dataclass
class World:
    system: LiveSystem
    provider: OidcProvider
    passwords: dict[str, str]  # the demo accounts' generated passwords, from their 0600 file
    app_key: ECKey  # the telemedicine app's private key; its public half is registered

    @property
    def url(self) -> str:
        return self.system.url


def demo_passwords(path: Path) -> dict[str, str]:
    lines = (line.split("\t") for line in path.read_text().splitlines())
    return {name: password for name, _role, password in lines}


@pytest.fixture
def world(mosquitto: Mosquitto, topic_root: str, tmp_path: Path) -> Iterator[World]:
    port = free_port()
    audience = f"http://127.0.0.1:{port}/api"  # what both issuers' tokens must name
    provider = OidcProvider(tmp_path / "oidc", audiences=(audience,)).start()
    try:
        settings = settings_for(
            tmp_path / "data",
            mosquitto.port,
            topic_root,
            http_port=port,
            api_audience=audience,
            oidc_issuer=provider.issuer,
            check_workers=0,
        )
        system, passwords, app_key = set_up(settings, mosquitto.port)
        try:
            yield World(system, provider, passwords, app_key)
        finally:
            system.close()
    finally:
        provider.stop()


def set_up(settings: Settings, broker_port: int) -> tuple[LiveSystem, dict[str, str], ECKey]:
    """The demo's ward, people and care team, a second ward's clinician as an admin adds
    one, and a registered app; then the system, started. The people's passwords and the
    app's private key are what the test signs in and asks for tokens with."""
    settings.data_dir.mkdir(parents=True)
    ward = build_ward(DEVICES, SEED)
    assert sorted(ward.patients) == sorted(DEMO_WARD + EAST_WARD)
    cuffs = [d for d in ward.devices if d.kind == "cuff" and d.patient_id in DEMO_WARD]
    assert all(d.phase_s < PUBLISH_S for d in cuffs), "each demo patient's cuff publishes"
    fleet = Fleet(
        ward,
        BrokerAddress(port=broker_port),
        settings.simulator_dir,
        PublisherConfig(topic_root=settings.topic_root),
    )
    register_ward(fleet, settings.registry_path)
    with open_directory(settings, DEMO_ACTOR) as directory:
        accounts = ensure_demo_accounts(directory, settings.data_dir)
        assign_demo_ward(directory, accounts.clinician, DEMO_WARD)
        directory.add_user(EAST_CLINICIAN, "clinician", EAST_PASSWORD)
        directory.create_team("east")
        directory.add_member("east", EAST_CLINICIAN)
        for patient in EAST_WARD:
            directory.add_patient("east", patient)
    # the app, registered with its public key as `vitaltrail apps register` does
    app_key = ECKey.generate_key("P-384", private=True, parameters={"kid": "telemed-key-1"})
    apps = AppStore(settings.access_db_path)
    apps.register(APP_ID, APP_NAME, {"keys": [app_key.as_dict(private=False)]}, APP_SCOPES)
    apps.close()
    passwords = demo_passwords(accounts.passwords_file) | {EAST_CLINICIAN: EAST_PASSWORD}
    return LiveSystem(settings, fleet, PUBLISH_S).start(), passwords, app_key


def sign_in(page: Page, user: str, password: str) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot in the test's directory, and in docs/screenshots if it exists;
    first a check that nothing makes the page scroll sideways."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    wide = page.evaluate(WIDER_THAN_VIEWPORT)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{name}: {scroll} px wide at {width} px: {wide}"
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SHOTS.is_dir():
        shutil.copy(path, SHOTS / path.name)


def app_token(world: World) -> str:
    """The app's token, SMART Backend Services: its signed assertion posted to /auth/token."""
    form = token_request(APP_ID, world.app_key, f"{world.url}/auth/token", APP_SCOPES)
    response = httpx2.post(f"{world.url}/auth/token", data=form, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == APP_SCOPES
    token: str = body["access_token"]
    return token


def read_vitals(token: str, url: str, patient: str = DEMO_PATIENT) -> httpx2.Response:
    return httpx2.get(f"{url}/api/v1/patients/{patient}/vitals", headers=bearer(token), timeout=10)


def refusal(status: int, body: dict[str, Any]) -> str | None:
    """Why the API refused a read (403), from its answer; None if it did not refuse."""
    detail = str(body.get("detail", ""))
    return detail.removeprefix("access refused: ") if status == 403 else None


def alert_stream_served(url: str) -> bool:
    """Whether the API serves issue 11's alert stream (contract 2) yet."""
    schema = httpx2.get(f"{url}/openapi.json", timeout=10).json()
    return "/api/v1/alerts/stream" in schema["paths"]


def ward_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#patients [data-patient]").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.patient)"
    )
    return ids


def test_readings_through_mosquitto_reach_the_right_people_and_every_read_is_shown(
    world: World,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, system = world.url, world.system

    # --- the demo clinician: nobody signed in is sent to sign in, and back to the ward
    ward_context = browser.new_context(viewport={"width": 1920, "height": 1080})
    ward = ward_context.new_page()
    ward_problems = watch(ward)
    ward.goto(f"{url}/")
    ward.wait_for_url(f"{url}/sign-in?next=%2F")
    sign_in(ward, CLINICIAN, world.passwords[CLINICIAN])
    ward.wait_for_url(f"{url}/")
    expect(ward.locator("#who")).to_have_text(f"{CLINICIAN} (clinician)")

    # the ward published through the broker, and the ingestor recorded every reading
    wait_for(lambda: system.published is not None or system.error is not None, 30, "the ward")
    published = system.published
    assert published is not None, system.error
    assert published.sent == published.submitted > 0
    assert published.queued == 0
    wait_for(lambda: system.ingested() >= published.sent, 20, "the ingestor")
    assert system.ingested() == published.sent

    # exactly the care team's patients, each with their latest reading: the one their
    # wristband signed and published through Mosquitto
    rows = ward.locator("#patients [data-patient]")
    expect(rows).to_have_count(len(DEMO_WARD))
    assert sorted(ward_ids(ward)) == sorted(DEMO_WARD)
    shown: dict[str, float] = {}  # each patient's heart rate on the page
    for patient in DEMO_WARD:
        latest = ward.request.get(f"{url}/api/v1/patients/{patient}/vitals").json()["vitals"]
        (hr,) = (v for v in latest if v["code"] == HEART_RATE.code)
        tile = ward.locator(f'[data-patient="{patient}"]')
        # the page refreshes itself: expect() waits for it
        heart = tile.locator(f'[data-code="{HEART_RATE.code}"] .vital-value')
        expect(heart).to_have_attribute("data-entry-index", str(hr["entry_index"]))
        expect(heart.locator(".number")).to_have_text(f"{hr['value']:g}")
        reading = ward.request.get(f"{url}/api/v1/readings/{hr['entry_index']}").json()
        assert reading["device_id"] == f"{patient}-band"
        assert hr["value"] in [s["value"] for s in reading["samples"]]
        shown[patient] = hr["value"]
        temperature = tile.locator(f'[data-code="{BODY_TEMPERATURE.code}"] .number')
        expect(temperature).to_have_text(re.compile(r"^\d+\.\d$"))  # 0.1 °C
        blood_pressure = tile.locator(f'[data-code="{SYSTOLIC_BP.code}"] .number')
        expect(blood_pressure).to_have_text(BLOOD_PRESSURE)  # from the cuff, at about 2 s
    expect(ward.locator("#ledger")).to_contain_text("sealed")
    shoot(ward, tmp_path, "e2e-ward-1920")
    ward.set_viewport_size({"width": 400, "height": 860})
    expect(rows).to_have_count(len(DEMO_WARD))
    shoot(ward, tmp_path, "e2e-ward-400")
    # a patient outside the care team, asked for by name, is refused
    outside = ward.request.get(f"{url}/api/v1/patients/{EAST_WARD[0]}/vitals")
    assert refusal(outside.status, outside.json()) == "not-in-care-team"

    # --- the patient: /me asks them to sign in, and brings them back after it
    me_context = browser.new_context(viewport={"width": 1920, "height": 1080})
    me = me_context.new_page()
    me_problems = watch(me)
    me.goto(f"{url}/me")
    expect(me.get_by_role("heading", name="Please sign in")).to_be_visible()
    me.get_by_role("link", name="Sign in").click()
    sign_in(me, PATIENT, world.passwords[PATIENT])
    me.wait_for_url(f"{url}/me")
    expect(me.locator("body")).to_have_attribute("data-ready", "true")
    expect(me.locator("#who")).to_have_text(f"Patient {DEMO_PATIENT}")

    # before any consent the app is refused
    token = app_token(world)
    refused = read_vitals(token, url)
    assert refusal(refused.status_code, refused.json()) == "no-consent"

    # the patient gives the app access, signed with a key made in this browser
    me.get_by_label("App", exact=True).select_option(label=APP_NAME)
    me.get_by_label("My treatment").check()
    me.get_by_role("button", name="Give access").click()
    expect(me.get_by_role("status")).to_contain_text(f"{APP_NAME} may now see your vital signs")
    card = me.get_by_role("listitem").filter(has_text=APP_NAME)
    expect(card).to_contain_text("In force")

    # the app reads the patient's vital signs: the readings from the broker
    allowed = read_vitals(token, url)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["patient_id"] == DEMO_PATIENT
    (hr,) = (v for v in allowed.json()["vitals"] if v["code"] == HEART_RATE.code)
    assert hr["value"] == shown[DEMO_PATIENT]  # what the clinician's ward showed
    # ... and only that patient's
    other = read_vitals(token, url, DEMO_WARD[1])
    assert refusal(other.status_code, other.json()) == "no-consent"

    # the patient withdraws; the app's next read, with the same token, is refused
    me.get_by_role("button", name=f"Withdraw access for {APP_NAME}").click()
    expect(me.get_by_role("status")).to_contain_text("can no longer see your vital signs")
    expect(card).to_contain_text("Withdrawn")
    withdrawn = read_vitals(token, url)
    assert refusal(withdrawn.status_code, withdrawn.json()) == "no-consent"

    # an app of the hospital's OpenID provider: its token is accepted, the read refused
    hospital = world.provider.token()["access_token"]
    unconsented = read_vitals(hospital, url)
    assert refusal(unconsented.status_code, unconsented.json()) == "no-consent"

    # --- another ward's clinician: their own ward, then the patient by breaking the glass
    east_context = browser.new_context(viewport={"width": 1920, "height": 1080})
    east = east_context.new_page()
    east_problems = watch(east)
    east.goto(f"{url}/")
    sign_in(east, EAST_CLINICIAN, world.passwords[EAST_CLINICIAN])
    east.wait_for_url(f"{url}/")
    expect(east.locator("#patients [data-patient]")).to_have_count(len(EAST_WARD))
    assert sorted(ward_ids(east)) == sorted(EAST_WARD)
    vitals_url = f"{url}/api/v1/patients/{DEMO_PATIENT}/vitals"
    closed = east.request.get(vitals_url)
    assert refusal(closed.status, closed.json()) == "not-in-care-team"
    glass = east.request.get(vitals_url, headers={"X-Break-Glass-Reason": GLASS})
    assert glass.status == 200
    assert glass.json()["patient_id"] == DEMO_PATIENT

    # --- the patient's access log shows all of it
    me.reload()
    expect(me.locator("body")).to_have_attribute("data-ready", "true")
    log = me.locator("#log-rows tr")
    app_rows = log.filter(has_text=f"{APP_NAME} (app)")
    expect(app_rows).to_have_count(3)  # refused, allowed, refused: newest first
    expect(app_rows.nth(0)).to_contain_text("RefusedYou had not given access")
    expect(app_rows.nth(1)).to_contain_text("Allowed")
    expect(app_rows.nth(1)).to_contain_text("Vital signs")
    expect(app_rows.nth(2)).to_contain_text("RefusedYou had not given access")
    provider_rows = log.filter(has_text=f"{world.provider.client_id} (app)")
    expect(provider_rows).to_have_count(1)
    expect(provider_rows).to_contain_text("Refused")
    glass_rows = me.locator("#log-rows tr.break-glass")
    expect(glass_rows).to_have_count(1)
    expect(glass_rows).to_contain_text(f"{EAST_CLINICIAN} (clinician)")
    expect(glass_rows).to_contain_text("Allowed")
    expect(glass_rows).to_contain_text("Emergency access")
    expect(glass_rows).to_contain_text(GLASS)
    east_rows = log.filter(has_text=f"{EAST_CLINICIAN} (clinician)")
    expect(east_rows).to_have_count(2)  # the refusal without a reason, the break-glass
    expect(east_rows.nth(1)).to_contain_text("RefusedNot in your care team")
    expect(log.filter(has_text=f"{CLINICIAN} (clinician)").first).to_contain_text("Allowed")
    shoot(me, tmp_path, "e2e-access-log-1920")
    me.set_viewport_size({"width": 400, "height": 900})
    expect(glass_rows).to_contain_text(GLASS)
    shoot(me, tmp_path, "e2e-access-log-400")

    # the patient signs out from their page; the session is gone on the server too
    me.get_by_role("button", name="Sign out").click()
    me.wait_for_url(f"{url}/sign-in?signed-out")
    assert me.request.get(f"{url}/api/v1/me/access-log").status == 401

    if not alert_stream_served(url):  # the ward page falls back to polling on the 404
        ward_problems, east_problems = (
            [p for p in found if "status of 404 " not in p]
            for found in (ward_problems, east_problems)
        )
    assert (ward_problems, me_problems, east_problems) == ([], [], [])
    for context in (ward_context, me_context, east_context):
        context.close()

    # --- the record: the ingestor sealed every access into the ledger, and the auditor finds
    # each one allowed by the directory and consents in force at its place in the log
    world.system.close()
    audited = subprocess.run(
        [
            sys.executable,
            "-m",
            "vitaltrail.cli",
            "audit",
            "--data-dir",
            str(system.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert f"{EAST_CLINICIAN} (clinician) read {DEMO_PATIENT}: {GLASS!r}" in audited.stdout
