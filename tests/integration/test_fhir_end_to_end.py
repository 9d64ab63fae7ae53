"""End to end, as a telemedicine app sees vitaltrail through FHIR (issue 10, "Done when").

Simulated wearables publish signed readings through a real Mosquitto to the ingestor, which
logs them in the ledger; the API serves them as FHIR R4. An app registered with an ES384 (then,
in the second case, an RS384) key pair gets a token the SMART Backend Services way
(``client_credentials`` with a ``private_key_jwt`` assertion at ``/auth/token``) and uses a
stock FHIR client library (fhirpy) as any app would:

1. before the patient's consent its search is refused: 403, an OperationOutcome saying
   ``no-consent``, and the refusal is in the access trail;
2. after it, it searches the patient's heart rate newest first and follows ``next`` links to
   the end while readings keep arriving: exactly the Observations the ledger held when the
   walk began, each once, in order, with the ledger's values;
3. it takes one Observation's Provenance, writes the proof bundle and the COSE message out of
   its signatures and verifies them offline - ``vitaltrail verify`` in a subprocess and
   ``ledger.verifier.verify_bundle`` - and the message is the ledger's, byte for byte, its
   value the Observation's.

Every resource the client was sent validates (tests/fhir_validation.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError
from joserfc.jwk import ECKey, Key, RSAKey

from access.apps import AppStore
from access.fhir import instant
from access.trail import DENY, PERMIT, SEARCH
from devices.cose import parse_sign1
from devices.publisher import BrokerAddress, PublisherConfig
from devices.reading import decode_reading
from devices.vitals import HEART_RATE
from fhirserver.observations import parse_observation_id
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader
from ledger.note import NoteVerifier
from ledger.verifier import verify_bundle
from simulator.fleet import Fleet
from simulator.ward import build_ward
from tests.api_access import APP_SCOPES, consent, token_request
from tests.fhir_api import access_events, checked, next_url
from tests.live_system import LiveSystem
from tests.servers import Mosquitto
from tests.stack import settings_for, wait_for
from vitaltrail.demo import register_ward
from vitaltrail.mosquitto import free_port

pytestmark = pytest.mark.integration

# build_ward(4, seed=2): patients 001 and 002, each a band (heart rate every second) and a cuff
DEVICES, SEED = 4, 2
HISTORY_S = 90  # readings replayed at the start: the band's 90 s before it
PUBLISH_S = 60  # then live, until the module's cases are done
PAGE = 20  # _count: 90 s and more of heart rate is five pages and more
PAUSE_S = 0.4  # between pages: the band's next readings arrive during the walk
HR = f"http://loinc.org|{HEART_RATE.code}"
CASES = {"ES384": "patient-001", "RS384": "patient-002"}  # each app reads its own patient


@pytest.fixture(scope="module")
def live(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSystem]:
    data_dir = tmp_path_factory.mktemp("fhir-e2e") / "data"
    topic_root = f"t-{uuid.uuid4().hex[:12]}/vitaltrail/v1"
    settings = settings_for(data_dir, mosquitto.port, topic_root, http_port=free_port())
    settings.data_dir.mkdir(parents=True)
    ward = build_ward(DEVICES, SEED)
    assert sorted(ward.patients) == sorted(CASES.values())
    broker = BrokerAddress(port=mosquitto.port)
    config = PublisherConfig(topic_root=settings.topic_root)
    fleet = Fleet(ward, broker, settings.simulator_dir, config)
    register_ward(fleet, settings.registry_path)
    system = LiveSystem(settings, fleet, PUBLISH_S, history_s=HISTORY_S).start()
    try:
        yield system
    finally:
        system.close()


@dataclass
class App:
    """A telemedicine app: its client id and private key (the public half registered)."""

    client_id: str
    key: Key
    alg: str


def register_app(system: LiveSystem, alg: str) -> App:
    """As `vitaltrail apps register` does: the app's public JWK set and its system scopes."""
    client_id = f"telemed-{alg.lower()}"
    kid = f"{client_id}-key-1"
    key: Key = (
        ECKey.generate_key("P-384", parameters={"kid": kid}, private=True)
        if alg == "ES384"
        else RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
    )
    apps = AppStore(system.settings.access_db_path)
    try:
        apps.register(
            client_id, f"Telemed {alg}", {"keys": [key.as_dict(private=False)]}, APP_SCOPES
        )
    finally:
        apps.close()
    return App(client_id, key, alg)


def app_token(system: LiveSystem, app: App) -> str:
    """SMART Backend Services: the app's signed assertion, posted to the token endpoint."""
    endpoint = f"{system.url}/auth/token"
    form = token_request(app.client_id, app.key, endpoint, APP_SCOPES, app.alg)
    response = httpx2.post(endpoint, data=form, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["token_type"], body["scope"]) == ("Bearer", APP_SCOPES)
    token: str = body["access_token"]
    return token


class Answers:
    """Every answer the FHIR client is sent (a requests hook): kept to be validated, and a
    pause after each page that has a next one, so that readings arrive during a walk."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
        body: dict[str, Any] = response.json()
        self.bodies.append(body)
        if body.get("resourceType") == "Bundle" and next_url(body) is not None:
            time.sleep(PAUSE_S)


def fhir_client(system: LiveSystem, token: str, answers: Answers) -> SyncFHIRClient:
    return SyncFHIRClient(
        f"{system.url}/fhir",
        authorization=f"Bearer {token}",
        requests_config={"timeout": 10, "hooks": {"response": [answers]}},
    )


def plain(resource: Any) -> dict[str, Any]:
    """A resource fhirpy made (its references are objects) as the JSON it was sent."""
    serialized: dict[str, Any] = resource.serialize()
    return serialized


@dataclass(frozen=True)
class Logged:
    """A heart-rate sample as the ledger holds it."""

    entry_index: int
    time_ms: int
    value: float


def logged_heart_rate(system: LiveSystem, patient: str, start: int, end: int) -> list[Logged]:
    """The patient's band's heart-rate samples in ledger entries ``[start, end)``, decoded from
    the signed messages here (not through the FHIR index)."""
    reader = LedgerReader(system.settings.ledger_location)
    try:
        found = []
        for index, data in reader.log.entries(start, end):
            entry = LedgerEntry.decode(data)
            if entry.kind is not EntryKind.READING:
                continue
            reading = decode_reading(parse_sign1(entry.body).payload)
            if reading.device_id != f"{patient}-band":
                continue
            samples = [s for s in reading.samples if s.code == HEART_RATE.code]
            assert len(samples) <= 1, "a band signs one heart rate per reading"
            found += [Logged(index, s.time_ms, s.value) for s in samples]
        return found
    finally:
        reader.close()


def ledger_size(system: LiveSystem) -> int:
    reader = LedgerReader(system.settings.ledger_location)
    try:
        return reader.log.stored_size()
    finally:
        reader.close()


def ledger_body(system: LiveSystem, index: int) -> bytes:
    """The signed message ledger entry ``index`` holds."""
    reader = LedgerReader(system.settings.ledger_location)
    try:
        data = reader.log.entry(index)
        assert data is not None
        return LedgerEntry.decode(data).body
    finally:
        reader.close()


def walk_size(first_page: dict[str, Any]) -> int:
    """The ledger size a walk reads below: ``as_of``, the u64 after the version byte of the
    first ``next`` link's cursor (docs/formats.md, "Bundles and paging")."""
    url = next_url(first_page)
    assert url is not None, "a walk of one page"
    (cursor,) = parse_qs(urlsplit(url).query)["_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert raw[0] == 1
    return int.from_bytes(raw[1:9], "big")


@pytest.mark.parametrize("alg", list(CASES))
def test_an_app_searches_heart_rate_by_fhir_and_proves_a_reading_offline(
    live: LiveSystem, alg: str, tmp_path: Path
) -> None:
    system, settings, patient = live, live.settings, CASES[alg]

    def history_logged() -> bool:
        return (
            live.error is not None or len(logged_heart_rate(live, patient, 0, 10**9)) >= HISTORY_S
        )

    wait_for(history_logged, 20, "the replayed history")
    assert live.error is None, live.error
    app = register_app(system, alg)
    answers = Answers()
    fhir = fhir_client(system, app_token(system, app), answers)
    heart_rate = (
        fhir.resources("Observation").search(patient=patient, code=HR).sort("-date").limit(PAGE)
    )

    # --- before the patient's consent: refused, as an OperationOutcome, and on record
    with pytest.raises(ForbiddenError) as refused:
        heart_rate.fetch()
    outcome = json.loads(str(refused.value))
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "forbidden"
    assert [c["code"] for c in issue["details"]["coding"]] == ["no-consent"]
    mine = [e.access for e in access_events(settings) if e.access.agent.id == app.client_id]
    assert [(a.outcome, a.reason, a.interaction, a.route, a.patients) for a in mine] == [
        (DENY, "no-consent", SEARCH, "GET /fhir/Observation", (patient,))
    ]

    # --- the patient consents (staff record it on their behalf); the app walks every page
    consent(settings, patient, app.client_id)
    before = len(answers.bodies)
    found = [plain(o) for o in heart_rate.fetch_all()]
    pages = answers.bodies[before:]
    as_of = walk_size(pages[0])
    after_walk = ledger_size(system)
    assert len(pages) >= HISTORY_S // PAGE + 1
    ids = [o["id"] for o in found]
    assert len(ids) == len(set(ids))  # no duplicate
    logged = logged_heart_rate(system, patient, 0, as_of)
    newest_first = sorted(logged, key=lambda s: (s.time_ms, s.entry_index), reverse=True)
    assert ids == [f"e{s.entry_index}-{HEART_RATE.code}" for s in newest_first]  # no gap
    assert {p["total"] for p in pages} == {len(ids)}
    for observation, sample in zip(found, newest_first, strict=True):
        assert observation["valueQuantity"]["value"] == sample.value
        assert observation["effectiveDateTime"] == instant(sample.time_ms)
        assert observation["subject"] == {"reference": f"Patient/{patient}"}
    # readings kept arriving during the walk: in none of its pages, there for the next search
    assert after_walk > as_of
    wait_for(lambda: bool(logged_heart_rate(system, patient, as_of, 10**9)), 10, "new readings")
    arrived = logged_heart_rate(system, patient, as_of, 10**9)
    assert all(s.time_ms > newest_first[0].time_ms for s in arrived)
    (newest,) = heart_rate.limit(1).fetch()
    assert parse_observation_id(newest["id"])[0] >= as_of

    # --- one Observation's Provenance: once sealed, its signatures hold the proof
    observation = found[-1]  # the oldest: in a sealed block by now
    provenances = fhir.resources("Provenance").search(target=f"Observation/{observation['id']}")
    (provenance,) = (plain(p) for p in provenances.fetch())
    assert provenance["target"] == [{"reference": f"Observation/{observation['id']}"}]
    assert provenance["agent"][0]["who"] == observation["device"]
    seal = {e["url"]: e.get("valueCode") for e in provenance["extension"]}
    assert seal["urn:vitaltrail:fhir:ledger-proof"] == "sealed"
    cose_signature, proof_signature = provenance["signature"]
    assert cose_signature["sigFormat"] == "application/cose"
    assert proof_signature["sigFormat"] == "application/json"
    sign1 = base64.b64decode(cose_signature["data"])
    bundle_path = tmp_path / "proof-bundle.json"
    bundle_path.write_bytes(base64.b64decode(proof_signature["data"]))
    (tmp_path / "reading.cose").write_bytes(sign1)

    # --- verified offline: the command, as a subprocess, with the pinned ledger key only
    ledger_key = settings.ledger_key_path.with_suffix(".pub")
    command = [sys.executable, "-m", "vitaltrail.cli", "verify", str(bundle_path)]
    verified = subprocess.run(
        [*command, "--ledger-key", str(ledger_key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entry_index = parse_observation_id(observation["id"])[0]
    reading = decode_reading(parse_sign1(sign1).payload)
    assert f"VERIFIED: reading {reading.device_id}#{reading.seq} is entry {entry_index}" in (
        verified.stdout
    )
    # ... and the library it uses
    report = verify_bundle(
        bundle_path.read_bytes(), NoteVerifier.parse(ledger_key.read_text().strip())
    )
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.index == entry_index
    assert report.reading == reading
    # the COSE message is the ledger's, byte for byte, and its value is the Observation's
    assert sign1 == ledger_body(system, entry_index)
    (signed,) = (s for s in reading.samples if s.code == HEART_RATE.code)
    assert signed.value == observation["valueQuantity"]["value"]
    assert instant(signed.time_ms) == observation["effectiveDateTime"]
    assert f"Device/{reading.device_id}" == observation["device"]["reference"]

    # every read was recorded: the refusal, then a permit for each page, each consent-based
    mine = [e.access for e in access_events(settings) if e.access.agent.id == app.client_id]
    assert [a.outcome for a in mine].count(PERMIT) == len(pages) + 2  # + the newest, Provenance
    assert all(a.reason == "consent" for a in mine if a.outcome == PERMIT)

    # every resource the client was sent is valid R4, every Observation a vital sign
    assert len(answers.bodies) == len(pages) + 3  # the refusal, the newest, the Provenance
    for body in answers.bodies:
        checked(body)
