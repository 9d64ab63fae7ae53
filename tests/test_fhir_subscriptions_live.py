"""FHIR subscriptions end to end: the API served by uvicorn, readings through the real ingest
pipeline into the real ledger, a real rest-hook receiver (an HTTP server) and a real websocket
client (the ``websockets`` package), tokens from the embedded issuer (an app the SMART Backend
Services way, a clinician), consent and care teams as staff record them, and the access trail
read back from the journal."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from websockets.sync.client import ClientConnection, connect

from access.care_teams import CareTeamStore
from access.journal import Journal
from access.trail import AccessEvent, AccessTrail
from dashboards.app import create_app
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.registry import DeviceRegistry
from fhirserver.subscription_topics import NEW_VITAL_SIGNS
from ingest.mqtt_source import InboundMessage
from tests.api_access import Tokens, assign, bearer, consent, withdraw
from tests.fhir_validation import check_vital_signs, validate
from tests.servers import free_port, serving
from tests.stack import now_ms, signed, vitals, wait_for
from tests.subscription_docs import event_numbers, notification_type, subscription_doc
from vitaltrail.runtime import IngestRuntime, build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

APP = "telemed-1"
APP_SCOPES = "system/Observation.rs system/Subscription.crds"
DELIVERY_BOUND_S = 3.0  # a new reading's notification arrives within this (the engine polls 0.1 s)
FHIR_JSON = "application/fhir+json"


class Receiver:
    """A rest-hook endpoint: an HTTP server on the loopback keeping what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, str], dict[str, Any]]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((time.time(), dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def of(self, kind: str) -> list[tuple[float, dict[str, str], dict[str, Any]]]:
        return [r for r in self.received if notification_type(r[2]) == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parameter(bundle: dict[str, Any], name: str) -> Any:
    params = bundle["entry"][0]["resource"]["parameter"]
    return next(p for p in params if p["name"] == name)


@dataclass
class Ward:
    """Bands on patients, whose readings go through the ingest pipeline into the ledger."""

    settings: Settings
    runtime: IngestRuntime
    signers: dict[str, DeviceSigner] = field(default_factory=dict)
    seq: int = 0

    def reading(self, patient: str, hr: float) -> float:
        """Append a reading; when it was durable in the ledger."""
        self.seq += 1
        device = f"{patient}-band"
        message = signed(device, self.signers[patient], self.seq, vitals(now_ms(), hr=hr))
        topic = readings_topic(self.settings.topic_root, device)
        self.runtime.ingestor.pipeline.process(
            [InboundMessage(topic, message, 0, 1, 0, 0)], now_ms()
        )
        return time.time()


@dataclass
class Live:
    base: str
    settings: Settings
    ward: Ward
    tokens: Tokens
    receiver: Receiver
    http: httpx2.Client

    def trail(self, patient: str) -> list[AccessEvent]:
        journal = Journal(self.settings.access_journal_path)
        try:
            return AccessTrail(journal).for_patient(patient)
        finally:
            journal.close()

    def create(self, token: str, doc: dict[str, Any]) -> httpx2.Response:
        return self.http.post(
            "/fhir/Subscription",
            content=json.dumps(doc),
            headers={**bearer(token), "Content-Type": FHIR_JSON},
        )

    def status(self, token: str, sub_id: str) -> dict[str, Any]:
        """The subscription's status parameters by name (``$status``)."""
        answer = self.http.get(f"/fhir/Subscription/{sub_id}/$status", headers=bearer(token))
        assert answer.status_code == 200
        validate(answer.json())
        return {p["name"]: p for p in answer.json()["entry"][0]["resource"]["parameter"]}

    def status_code(self, token: str, sub_id: str) -> str:
        return str(self.status(token, sub_id)["status"]["valueCode"])


PATIENTS = ("patient-a", "patient-b", "patient-c")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("subscriptions") / "data",
        check_workers=0,
        http_port=port,
        fhir_subscription_http_loopback=True,
        fhir_subscription_poll_s=0.1,
    )
    registry = DeviceRegistry(settings.registry_path)
    signers = {p: DeviceSigner.generate() for p in PATIENTS}
    for patient, signer in signers.items():
        registry.register(f"{patient}-band", patient, signer.key)
    registry.close()
    runtime = build_ingest(settings)
    ward = Ward(settings, runtime, signers)
    ward.reading("patient-a", 60)  # before any subscription
    receiver, tokens = Receiver(), Tokens(settings)
    server = http_server(create_app(data_sources(settings)), "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    with serving(server), httpx2.Client(base_url=base, timeout=10) as http:
        yield Live(base, settings, ward, tokens, receiver, http)
    receiver.close()
    tokens.close()
    runtime.close()


def test_a_rest_hook_gets_handshake_heartbeat_events_until_consent_is_withdrawn(
    live: Live,
) -> None:
    token = live.tokens.app(APP, APP_SCOPES, registered=APP_SCOPES)
    doc = subscription_doc(
        "patient-a", base=live.base, endpoint=live.receiver.url, content="full-resource",
        heartbeat_s=1, headers=["Authorization: Bearer receiver-secret"],
    )  # fmt: skip

    refused = live.create(token, doc)  # no consent yet
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith(FHIR_JSON)
    validate(refused.json())
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "no-consent"
    (first,) = live.trail("patient-a")
    assert (first.access.outcome, first.access.reason) == ("deny", "no-consent")
    assert (first.access.agent.id, first.access.route) == (APP, "POST /fhir/Subscription")

    grant = consent(live.settings, "patient-a", APP)
    created = live.create(token, doc)
    assert created.status_code == 201
    sub = created.json()
    validate(sub)
    assert created.headers["location"] == f"/fhir/Subscription/{sub['id']}"
    assert sub["status"] == "requested"
    assert sub["criteria"] == NEW_VITAL_SIGNS.url(live.base)
    statement = live.http.get("/fhir/metadata").json()
    (offered,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert offered["extension"][0]["valueCanonical"] == sub["criteria"]

    wait_for(lambda: len(live.receiver.of("handshake")) == 1, 5, "the handshake")
    _, headers, handshake = live.receiver.of("handshake")[0]
    validate(handshake)
    assert headers["Authorization"] == "Bearer receiver-secret"
    assert headers["Content-Type"] == FHIR_JSON
    wait_for(lambda: live.status_code(token, sub["id"]) == "active", 5, "active")
    wait_for(lambda: len(live.receiver.of("heartbeat")) >= 1, 5, "a heartbeat")
    validate(live.receiver.of("heartbeat")[0][2])

    appended = live.ward.reading("patient-a", 88)
    wait_for(lambda: bool(live.receiver.of("event-notification")), DELIVERY_BOUND_S, "the event")
    received_at, _, notification = live.receiver.of("event-notification")[0]
    assert received_at - appended < DELIVERY_BOUND_S
    validate(notification)
    assert event_numbers(notification) == [1, 2]
    observations = [e["resource"] for e in notification["entry"][1:]]
    heart_rate = next(o for o in observations if o["code"]["coding"][0]["code"] == "8867-4")
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == ["2708-6", "8867-4"]
    assert heart_rate["valueQuantity"]["value"] == 88
    assert {o["subject"]["reference"] for o in observations} == {"Patient/patient-a"}
    assert all(check_vital_signs(o) == [] for o in observations)
    read = live.http.get(f"/fhir/Subscription/{sub['id']}", headers=bearer(token)).json()
    assert read["channel"]["header"] == ["Authorization: [not shown]"]
    # the delivery is an access event, recorded before it was sent, named by the bundle's id
    (delivered,) = [e for e in live.trail("patient-a") if e.access.request_id == notification["id"]]
    assert (delivered.access.outcome, delivered.access.reason) == ("permit", "consent")
    assert delivered.access.route == "NOTIFY rest-hook /fhir/Subscription/{id}"
    assert delivered.access.consents == (("patient-a", grant),)
    assert delivered.access.time_ms <= received_at * 1000

    withdraw(live.settings, "patient-a", grant)
    live.ward.reading("patient-a", 90)
    wait_for(
        lambda: live.status_code(token, sub["id"]) == "error",
        DELIVERY_BOUND_S, "the subscription to stop",
    )  # fmt: skip
    error = live.status(token, sub["id"])["error"]
    assert error["valueCodeableConcept"]["coding"][0]["code"] == "access-refused"
    assert error["valueCodeableConcept"]["text"] == "no-consent"
    assert len(live.receiver.of("event-notification")) == 1
    refusal = live.trail("patient-a")[-1].access
    assert (refusal.outcome, refusal.reason) == ("deny", "no-consent")
    assert refusal.route == "NOTIFY rest-hook /fhir/Subscription/{id}"
    beats = len(live.receiver.of("heartbeat"))
    time.sleep(1.3)  # a stopped subscription sends nothing more, not even heartbeats
    assert len(live.receiver.of("event-notification")) == 1
    assert len(live.receiver.of("heartbeat")) == beats
    admin = bearer(live.tokens.user("root", "admin"))
    metrics = live.http.get("/metrics", headers=admin).text
    assert "vitaltrail_fhir_subscription_refused_total 1.0" in metrics
    assert "vitaltrail_fhir_subscription_events_total 4.0" in metrics


def receive(socket: ClientConnection) -> dict[str, Any]:
    message = json.loads(socket.recv(timeout=DELIVERY_BOUND_S))
    validate(message)
    return dict(message)


def bind(live: Live, token: str, sub_id: str) -> ClientConnection:
    answer = live.http.post(
        f"/fhir/Subscription/{sub_id}/$get-ws-binding-token", headers=bearer(token)
    )
    assert answer.status_code == 200
    validate(answer.json())
    found = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in answer.json()["parameter"]
    }
    assert found["websocket-url"] == live.base.replace("http", "ws") + "/fhir/ws"
    assert found["subscription"] == sub_id
    socket = connect(found["websocket-url"])
    socket.send(f"bind-with-token {found['token']}")
    return socket


def test_a_websocket_gets_its_events_resumes_after_a_reconnect_and_stops_with_the_care_team(
    live: Live,
) -> None:
    assign(live.settings, "ward-b", ["dr-bee"], ["patient-b"])
    token = live.tokens.user("dr-bee", "clinician")
    doc = subscription_doc(
        "patient-b", base=live.base, channel="websocket", endpoint=None, heartbeat_s=1
    )
    created = live.create(token, doc)
    assert created.status_code == 201
    sub_id = created.json()["id"]
    assert created.json()["status"] == "active"

    socket = bind(live, token, sub_id)
    handshake = receive(socket)
    assert notification_type(handshake) == "handshake"
    assert parameter(handshake, "events-since-subscription-start")["valueString"] == "0"
    appended = live.ward.reading("patient-b", 77)
    while notification_type(message := receive(socket)) == "heartbeat":
        pass
    assert notification_type(message) == "event-notification"
    assert time.time() - appended < DELIVERY_BOUND_S
    assert event_numbers(message) == [1, 2]
    focus = [p for p in parameter(message, "notification-event")["part"] if p["name"] == "focus"]
    assert focus[0]["valueReference"]["reference"].startswith("Observation/e")
    assert all("resource" not in e for e in message["entry"][1:])  # id-only
    beat = receive(socket)
    assert notification_type(beat) == "heartbeat"
    socket.close()

    live.ward.reading("patient-b", 78)  # while the client is away
    socket = bind(live, token, sub_id)
    again = receive(socket)
    assert notification_type(again) == "handshake"
    since_start = "events-since-subscription-start"
    wait_for(lambda: live.status(token, sub_id)[since_start]["valueString"] == "4", 5, "4 events")
    while notification_type(missed := receive(socket)) == "heartbeat":
        pass
    assert event_numbers(missed) == [3, 4]

    events = live.http.get(
        f"/fhir/Subscription/{sub_id}/$events",
        params={"eventsSinceNumber": 2},
        headers=bearer(token),
    )
    assert events.status_code == 200
    validate(events.json())
    assert notification_type(events.json()) == "query-event"
    assert event_numbers(events.json()) == [2, 3, 4]
    for bad in ("0", "-1", "1e3", str(2**64)):
        refused = live.http.get(
            f"/fhir/Subscription/{sub_id}/$events", params={"eventsSinceNumber": bad},
            headers=bearer(token),
        )  # fmt: skip
        assert refused.status_code == 400
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "bad-event-number"
    reads = [e.access for e in live.trail("patient-b")]
    assert [a.route for a in reads].count("GET /fhir/Subscription/{sub_id}/$events") == 5
    assert [a.route for a in reads].count("NOTIFY websocket /fhir/ws") == 2

    teams = CareTeamStore(live.settings.access_db_path)
    teams.remove_patient("ward-b", "patient-b")
    teams.close()
    live.ward.reading("patient-b", 79)
    wait_for(lambda: live.status_code(token, sub_id) == "error", DELIVERY_BOUND_S, "a stop")
    refusal = live.trail("patient-b")[-1].access
    assert (refusal.outcome, refusal.reason, refusal.route) == (
        "deny", "not-in-care-team", "NOTIFY websocket /fhir/ws",
    )  # fmt: skip
    deadline = time.time() + 1.5
    while time.time() < deadline:  # only heartbeats until it stops: no event
        try:
            assert notification_type(receive(socket)) != "event-notification"
        except TimeoutError:
            break
    socket.close()


def test_who_may_not_read_the_patient_may_not_subscribe_and_it_is_recorded(live: Live) -> None:
    token = live.tokens.user("dr-nobody", "clinician")  # in no care team
    doc = subscription_doc("patient-c", base=live.base, endpoint=live.receiver.url)
    refused = live.create(token, doc)
    assert refused.status_code == 403
    validate(refused.json())
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "not-in-care-team"
    (event,) = live.trail("patient-c")
    assert (event.access.agent.id, event.access.outcome, event.access.reason) == (
        "dr-nobody", "deny", "not-in-care-team",
    )  # fmt: skip
    # a break-glass reason opens one read, never a standing feed
    glass = live.http.post(
        "/fhir/Subscription", content=json.dumps(doc),
        headers={**bearer(token), "Content-Type": FHIR_JSON, "X-Break-Glass-Reason": "arrest"},
    )  # fmt: skip
    assert glass.status_code == 403

    scoped = live.tokens.app("reader-app", "system/Observation.rs")
    consent(live.settings, "patient-c", "reader-app")
    no_scope = live.create(scoped, doc)
    assert no_scope.status_code == 403
    assert no_scope.json()["issue"][0]["details"]["coding"][0]["code"] == "insufficient-scope"
    assert "insufficient_scope" in no_scope.headers["www-authenticate"]

    admin = live.tokens.user("root", "admin")
    assert live.create(admin, doc).status_code == 403
    assert live.http.post("/fhir/Subscription", content=json.dumps(doc)).status_code == 401

    bad = live.http.post(
        "/fhir/Subscription", content=b"{not json",
        headers={**bearer(token), "Content-Type": FHIR_JSON},
    )  # fmt: skip
    assert bad.status_code == 400
    validate(bad.json())
    insecure = live.create(
        token, subscription_doc("patient-c", base=live.base, endpoint="http://10.1.2.3/hook")
    )
    assert insecure.status_code == 400
    assert insecure.json()["issue"][0]["details"]["coding"][0]["code"] == "insecure-endpoint"
    big = live.http.post(
        "/fhir/Subscription", content=b" " * 20_000,
        headers={**bearer(token), "Content-Type": FHIR_JSON},
    )  # fmt: skip
    assert big.status_code == 413


def test_a_subscription_is_its_owners_alone(live: Live, tmp_path: Path) -> None:
    assign(live.settings, "ward-d", ["dr-dee", "dr-eve"], ["patient-c"])
    dee, eve = live.tokens.user("dr-dee", "clinician"), live.tokens.user("dr-eve", "clinician")
    doc = subscription_doc("patient-c", base=live.base, channel="websocket", endpoint=None)
    sub_id = live.create(dee, doc).json()["id"]
    for path in ("", "/$status", "/$events"):
        assert (
            live.http.get(f"/fhir/Subscription/{sub_id}{path}", headers=bearer(eve)).status_code
            == 404
        )
    assert live.http.post(
        f"/fhir/Subscription/{sub_id}/$get-ws-binding-token", headers=bearer(eve)
    ).status_code == 404  # fmt: skip
    assert live.http.delete(f"/fhir/Subscription/{sub_id}", headers=bearer(eve)).status_code == 404
    mine = live.http.get("/fhir/Subscription", headers=bearer(dee)).json()
    validate(mine)
    assert [e["resource"]["id"] for e in mine["entry"]] == [sub_id]
    assert live.http.get("/fhir/Subscription", headers=bearer(eve)).json()["total"] == 0
    for status, total in (("active", 1), ("error", 0)):
        found = live.http.get("/fhir/Subscription", params={"status": status}, headers=bearer(dee))
        assert found.json()["total"] == total
    assert live.http.delete(f"/fhir/Subscription/{sub_id}", headers=bearer(dee)).status_code == 204
    assert live.http.get(f"/fhir/Subscription/{sub_id}", headers=bearer(dee)).status_code == 404
