"""The patient's page in Debian's chromium: a patient registers a key made in the browser, gives
an app access, sees it in force, withdraws it, and sees who read their data - and the bytes the
page signs are the ones the Python side encodes."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from access.consent import ConsentStatement, Grantee, SignedConsent
from access.trail import DENY, PERMIT, READ, Access, Agent
from devices.cose import _sig_structure, encode_sign1, parse_sign1, protected_header
from devices.keys import DeviceKey, DeviceSigner, key_id
from ledger.entries import EntryKind, LedgerEntry
from tests.browser.test_dashboard_page import browser  # noqa: F401 (fixture)
from tests.consent_app import ConsentApp, app_jwks, b64url, bearer_principal, consent_app
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.services import http_server

pytestmark = pytest.mark.browser

TELEMED = Grantee("app", "telemed-1")
VITALS_ROUTE = "GET /api/v1/patients/{patient_id}/vitals"


CSRF = "csrf-token-of-the-session"


def add_stand_ins(made: ConsentApp) -> None:
    """Stand-ins for routes other changes build: GET /api/v1/me/access-log (the shape the page
    reads, from the real trail) and the session's CSRF token at GET /auth/session."""
    verify = bearer_principal(made.verifier)

    @made.app.get("/auth/session")
    def session() -> dict[str, str]:
        return {"csrf_token": CSRF}

    @made.app.get("/api/v1/me/access-log")
    def access_log(request: Request) -> list[dict[str, Any]]:
        patient = verify(request).patient
        assert patient is not None
        return [
            {
                "who": {
                    "kind": e.access.agent.kind,
                    "id": e.access.agent.id,
                    "role": e.access.agent.role,
                },
                "when": e.access.time_ms,
                "purpose": list(e.access.purpose),
                "outcome": e.access.outcome,
                "break_glass": e.access.break_glass,
                "data": list(e.access.data),
            }
            for e in made.services.trail.for_patient(patient)
            if e.access.route != "GET /api/v1/me/consents"
        ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ConsentApp]]:
    made = consent_app(tmp_path / "data", page=True)
    add_stand_ins(made)
    port = free_port()
    server = http_server(made.app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}", made
    server.should_exit = True
    thread.join(10)
    made.close()


def post_json(url: str, body: dict[str, Any], made: ConsentApp, who: str = "ana") -> Any:
    """A call from outside the page (the patient's other device, a clinician)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {made.token(who)}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc.code}: {exc.read().decode()}") from None


def now_ms() -> int:
    return int(time.time() * 1000)


def app_read(outcome: str, reason: str, consents: tuple[tuple[str, int], ...] = ()) -> Access:
    return Access(
        now_ms(), Agent("app", "telemed-1", "app", jti="jti-app"), ("p-17",), ("vital-signs",),
        ("TREAT",), outcome, reason, READ, VITALS_ROUTE, consents=consents,
    )  # fmt: skip


def watch(page: Page) -> list[str]:
    """Console errors and page errors (a CSP violation is one)."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        expected = any(f"status of {code} " in message.text for code in (400, 401, 409))
        if message.type == "error" and not expected:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


WIDER_THAN_VIEWPORT = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth)
  .map((e) => `${e.tagName}.${e.className}#${e.id}`)"""


def test_a_patient_gives_and_withdraws_an_apps_access_and_sees_who_read(
    served: tuple[str, ConsentApp],
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, made = served
    trail = made.services.trail
    trail.record(
        Access(
            now_ms() - 3_600_000,
            Agent("user", "dr-cho", "clinician", jti="jti-cho"),
            ("p-17",),
            ("vital-signs",),
            ("ETREAT",),
            PERMIT,
            "break-glass",
            READ,
            VITALS_ROUTE,
            break_glass="Unconscious on arrival in A&E",
        )
    )
    trail.record(app_read(DENY, "no-consent"))
    # a clinician recorded a grant to another app for the patient, by phone (statement 0)
    made.issuer.apps.register("cardio-watch", "CardioWatch", app_jwks(), "system/Observation.rs")
    by_phone = {
        "reason": "patient asked by phone",
        "statement": {
            "status": "active", "grantee": {"kind": "app", "id": "cardio-watch"},
            "data": ["vital-signs"], "purpose": ["CAREMGT"], "start_ms": now_ms(),
        },
    }  # fmt: skip
    post_json(f"{url}/api/v1/patients/p-17/consents", by_phone, made, who="dr-cho")
    context = browser.new_context(
        viewport={"width": 1920, "height": 1080},
        extra_http_headers={"Authorization": f"Bearer {made.token('ana')}"},
    )
    page = context.new_page()
    problems = watch(page)
    posted: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: (
            posted.append((r.url, r.headers.get("x-csrf-token"))) if r.method == "POST" else None
        ),
    )
    page.goto(f"{url}/me")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_role("heading", name="Who may see my vital signs")).to_be_visible()
    expect(page.locator("#key-status")).to_contain_text("Not set up yet")
    phoned = page.get_by_role("listitem").filter(has_text="CardioWatch")
    expect(phoned).to_contain_text("In force")
    expect(phoned).to_contain_text("dr-cho (clinician) for you: “patient asked by phone”")
    expect(phoned).to_contain_text("Coordinating my care")

    # the log: the clinician's break-glass read is flagged, the app's refusal shown
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(2)
    glass = page.locator("#log-rows tr.break-glass")
    expect(glass).to_have_count(1)
    expect(glass).to_contain_text("dr-cho (clinician)")
    expect(glass).to_contain_text("Emergency access")
    expect(glass).to_contain_text("Unconscious on arrival in A&E")
    expect(rows.filter(has_text="Telemed One (app)")).to_contain_text("Refused")

    # give Telemed One access: the page makes the key, registers it, signs the grant
    page.get_by_label("App", exact=True).select_option(label="Telemed One")
    page.get_by_label("My treatment").check()
    page.get_by_role("button", name="Give access").click()
    expect(page.get_by_role("status")).to_contain_text("Telemed One may now see your vital signs")
    card = page.get_by_role("listitem").filter(has_text="Telemed One")
    expect(card).to_contain_text("In force")
    expect(card).to_contain_text("You, signed on your device")
    expect(page.locator("#key-status")).to_contain_text("Set up on this device")

    # server side: the ledger-bound entry is the patient's COSE_Sign1, under the registered key
    (key,) = made.services.consents.keys.of_patient("p-17")
    assert key.kind is EntryKind.PATIENT_KEY_REGISTERED
    assert made.services.consents.keys.active(key.key.kid) is not None
    (row,) = made.journal.of_kinds([EntryKind.CONSENT_SIGNED], "p-17")
    consent = SignedConsent.decode(row.body)
    assert consent.kid == key.key.kid
    consent.verify(key.key)
    assert consent.statement.grantee == TELEMED
    assert consent.statement.purpose == ("TREAT",)
    pending = made.journal.pending(0, now_ms())
    bound = [LedgerEntry.decode(e.data) for e in pending.entries if e.key == row.key]
    assert [e.body for e in bound] == [row.body]
    assert made.services.consents.in_force("p-17", TELEMED, "vital-signs", "TREAT", now_ms())

    # the app reads on that consent; the patient sees it after a reload
    trail.record(app_read(PERMIT, "consent", (("p-17", 1),)))
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Telemed One (app)")
    expect(rows.first).to_contain_text("Allowed")
    page.screenshot(path=str(tmp_path / "patient-1920-granted.png"), full_page=True)

    # meanwhile the patient registered a key on another device, which revoked this browser's
    other = DeviceSigner.from_seed(bytes(32)).key
    response = post_json(f"{url}/api/v1/me/keys", {"key": b64url(other.public_bytes)}, made)
    assert response["revoked"] == [key.key.kid.hex()]

    # withdraw it here: the page finds its key revoked, makes a new one and signs with that
    page.get_by_role("button", name="Withdraw access for Telemed One").click()
    expect(page.get_by_role("status")).to_contain_text("can no longer see your vital signs")
    expect(card).to_contain_text("Withdrawn")
    expect(page.get_by_role("button", name="Withdraw access for Telemed One")).to_have_count(0)
    assert (
        made.services.consents.in_force("p-17", TELEMED, "vital-signs", "TREAT", now_ms()) is None
    )
    signed = made.journal.of_kinds([EntryKind.CONSENT_SIGNED], "p-17")
    withdrawal = SignedConsent.decode(signed[-1].body)
    assert (withdrawal.statement.is_grant, withdrawal.statement.ends) == (False, 1)
    keys = made.services.consents.keys
    assert withdrawal.kid not in (key.key.kid, other.kid)
    active = keys.active(withdrawal.kid)
    assert active is not None
    assert active.patient_id == "p-17"
    assert keys.active(other.kid) is None  # one active key: the browser's new one
    page.screenshot(path=str(tmp_path / "patient-1920.png"), full_page=True)

    page.set_viewport_size({"width": 400, "height": 900})
    expect(card).to_contain_text("Withdrawn")
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(WIDER_THAN_VIEWPORT)
    assert width <= 400, f"the page is {width} px wide at 400 px, scrolling sideways: {wide}"
    page.screenshot(path=str(tmp_path / "patient-400.png"), full_page=True)
    assert problems == []
    # every change carried the session's CSRF token: the key, the grant, the withdrawal
    assert [u.removeprefix(url) for u, _ in posted] == [
        "/api/v1/me/keys", "/api/v1/me/consents",  # the first key, the grant
        "/api/v1/me/consents",  # the withdrawal signed by the revoked key: refused
        "/api/v1/me/keys", "/api/v1/me/keys",  # the old key again (refused), a new one
        "/api/v1/me/consents",  # the withdrawal, signed anew
    ]  # fmt: skip
    assert {token for _, token in posted} == {CSRF}
    context.close()


STATEMENTS = [
    ConsentStatement.grant(
        "p-17", 0, 1_763_700_000_000, TELEMED, data=["vital-signs"], purpose=["TREAT"],
        start_ms=1_763_700_000_000, end_ms=1_766_300_000_000,
    ),
    ConsentStatement.grant(
        "patient-0.a_b", 4_294_967_296, 2**53 - 1, Grantee("user", "dr-cho"),
        data=["8867-4", "vital-signs", "2708-6"], purpose=["TREAT", "PATRQT", "HRESCH"],
        actions=["use", "access"], start_ms=23, end_ms=65_536,
    ),
    ConsentStatement.grant(
        "p", 23, 24, TELEMED, data=["vital-signs"], purpose=["CAREMGT"], start_ms=255,
    ),
    ConsentStatement.withdrawal("p-17", 1, 1_763_790_000_000, ends=0),
]  # fmt: skip


def as_js(statement: ConsentStatement) -> dict[str, Any]:
    """The statement as the page builds it (a plain object; undefined fields left out)."""
    doc: dict[str, Any] = {
        "patient": statement.patient_id, "seq": statement.seq, "status": statement.status,
        "time": statement.time_ms,
    }  # fmt: skip
    if statement.is_grant:
        assert statement.grantee is not None
        doc |= {
            "grantee": [statement.grantee.kind, statement.grantee.id],
            "actions": list(statement.actions), "data": list(statement.data),
            "purpose": list(statement.purpose), "start": statement.start_ms,
        }  # fmt: skip
        if statement.end_ms is not None:
            doc["end"] = statement.end_ms
    else:
        doc["ends"] = statement.ends
    return doc


ENCODE = """async (docs) => {
  const cbor = await import('/static/cbor.js');
  return docs.map((d) => Array.from(cbor.encode(d)));
}"""

COSE = """async ([publicRaw, payload, signature]) => {
  const cose = await import('/static/cose.js');
  const kid = await cose.keyId(Uint8Array.from(publicRaw));
  const prot = cose.protectedHeader(kid);
  const p = Uint8Array.from(payload);
  return {
    kid: Array.from(kid), prot: Array.from(prot),
    tbs: Array.from(cose.toBeSigned(prot, p)),
    message: Array.from(cose.sign1Message(prot, p, Uint8Array.from(signature))),
  };
}"""

SIGN = """async (payload) => {
  const cose = await import('/static/cose.js');
  const pair = await crypto.subtle.generateKey({name: 'Ed25519'}, false, ['sign', 'verify']);
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const kid = await cose.keyId(raw);
  const message = await cose.sign1(pair.privateKey, kid, Uint8Array.from(payload));
  return {raw: Array.from(raw), message: Array.from(message)};
}"""


def test_the_page_encodes_and_signs_the_bytes_python_does(
    served: tuple[str, ConsentApp],
    browser: Browser,  # noqa: F811
) -> None:
    url, _ = served
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{url}/me")  # no token: the page asks to sign in
    expect(page.get_by_role("heading", name="Please sign in")).to_be_visible()

    encoded = page.evaluate(ENCODE, [as_js(s) for s in STATEMENTS])
    assert [bytes(e) for e in encoded] == [s.encode() for s in STATEMENTS]

    public = bytes(range(32))
    payload, signature = STATEMENTS[0].encode(), bytes(range(64, 128))
    out = page.evaluate(COSE, [list(public), list(payload), list(signature)])
    kid = key_id(public)
    assert bytes(out["kid"]) == kid
    assert bytes(out["prot"]) == protected_header(kid)
    assert bytes(out["tbs"]) == _sig_structure(protected_header(kid), payload)
    assert bytes(out["message"]) == encode_sign1(kid, payload, signature)

    signed = page.evaluate(SIGN, list(payload))
    key = DeviceKey(bytes(signed["raw"]))
    parse_sign1(bytes(signed["message"])).verify(key)  # a real browser signature verifies
    assert SignedConsent.decode(bytes(signed["message"])).statement == STATEMENTS[0]
    assert problems == []
