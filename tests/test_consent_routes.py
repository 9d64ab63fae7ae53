"""The consent routes: a patient registers a key, signs grants and withdrawals, reads them back;
staff record on a patient's behalf. Each refusal answers its reason code and is counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from access.consent import ConsentStatement, Grantee, SignedConsent
from access.consent_store import MAX_CLOCK_SKEW_MS
from access.patient_keys import PatientKeyStatement
from dashboards.consent_schemas import MAX_JSON_SEQ, b64url_decode
from devices.cose import encode_sign1, parse_sign1
from devices.keys import DeviceSigner
from ledger.entries import EntryKind
from tests.access_helpers import signer
from tests.consent_app import ConsentApp, b64url, consent_app, signed

DAY = 86_400_000
ANA_KEY, ANA_NEW_KEY, BEN_KEY = signer("ana"), signer("ana 2"), signer("ben")
TELEMED = Grantee("app", "telemed-1")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, ConsentApp]]:
    made = consent_app(tmp_path)
    with TestClient(made.app) as client:
        yield client, made
    made.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def grant(seq: int = 0, patient: str = "p-17", **kw: int) -> ConsentStatement:
    now = now_ms()
    return ConsentStatement.grant(
        patient, seq, kw.get("time_ms", now), TELEMED, data=["vital-signs"],
        purpose=["TREAT"], start_ms=kw.get("start_ms", now - DAY),
        end_ms=kw.get("end_ms", now + 30 * DAY),
    )  # fmt: skip


def register(client: TestClient, made: ConsentApp, who: str, key: DeviceSigner) -> None:
    r = client.post(
        "/api/v1/me/keys", json={"key": b64url(key.key.public_bytes)}, headers=made.auth(who)
    )
    assert r.status_code in (200, 201), r.text


def refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason


# --- keys -------------------------------------------------------------------------------


def test_a_patient_registers_a_key_raw_or_jwk_and_sending_it_again_changes_nothing(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    raw = b64url(ANA_KEY.key.public_bytes)
    r = client.post("/api/v1/me/keys", json={"key": raw}, headers=made.auth("ana"))
    assert r.status_code == 201
    assert r.json() == {"kid": ANA_KEY.key.kid.hex(), "registered": True, "revoked": []}
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": raw}
    again = client.post("/api/v1/me/keys", json={"jwk": jwk}, headers=made.auth("ana"))
    assert again.status_code == 200
    assert again.json()["registered"] is False
    rows = made.journal.of_kinds([EntryKind.PATIENT_KEY_REGISTERED], "p-17")
    assert len(rows) == 1
    assert PatientKeyStatement.decode(rows[0].kind, rows[0].body).key == ANA_KEY.key


def test_a_second_key_revokes_the_first_and_the_revoked_one_cannot_come_back(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    r = client.post(
        "/api/v1/me/keys",
        json={"key": b64url(ANA_NEW_KEY.key.public_bytes)},
        headers=made.auth("ana"),
    )
    assert r.status_code == 201
    assert r.json()["revoked"] == [ANA_KEY.key.kid.hex()]
    keys = client.get("/api/v1/me/consents", headers=made.auth("ana")).json()["keys"]
    assert keys == [
        {"kid": ANA_KEY.key.kid.hex(), "active": False},
        {"kid": ANA_NEW_KEY.key.kid.hex(), "active": True},
    ]
    back = client.post(
        "/api/v1/me/keys", json={"key": b64url(ANA_KEY.key.public_bytes)}, headers=made.auth("ana")
    )
    refused(back, 409, "revoked-key-reused")
    # a statement signed by the revoked key is refused too
    late = client.post(
        "/api/v1/me/consents", json={"message": signed(ANA_KEY, grant())}, headers=made.auth("ana")
    )
    refused(late, 400, "revoked-key")


def test_a_key_of_another_patient_is_taken(setup: tuple[TestClient, ConsentApp]) -> None:
    client, made = setup
    register(client, made, "ben", BEN_KEY)
    r = client.post(
        "/api/v1/me/keys", json={"key": b64url(BEN_KEY.key.public_bytes)}, headers=made.auth("ana")
    )
    refused(r, 409, "key-taken")
    assert made.services.consents.refused["key-taken"] == 1


BAD_KEYS: list[dict[str, object]] = [
    {},
    {"key": "AAAA"},  # 3 bytes
    {"key": b64url(ANA_KEY.key.public_bytes) + "="},  # padded
    {"key": b64url(ANA_KEY.key.public_bytes).replace("-", "+")},
    {"jwk": {"kty": "EC", "crv": "P-256", "x": b64url(bytes(32))}},
    {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(32)), "d": b64url(bytes(32))}},
    {"key": b64url(bytes(32)), "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(32))}},
]


def test_what_is_not_one_public_ed25519_key_is_refused(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    for body in BAD_KEYS:
        r = client.post("/api/v1/me/keys", json=body, headers=made.auth("ana"))
        refused(r, 400, "bad-key")
    assert made.services.refusals["bad-key"] == len(BAD_KEYS)
    assert made.journal.after(0) == []


# --- roles --------------------------------------------------------------------------------


ME_ROUTES = [
    ("GET", "/api/v1/me/apps"),
    ("GET", "/api/v1/me/consents"),
    ("POST", "/api/v1/me/consents"),
    ("POST", "/api/v1/me/keys"),
]


@pytest.mark.parametrize("who", ["dr-cho", "ada"])
def test_the_me_routes_are_for_patients_only(
    setup: tuple[TestClient, ConsentApp], who: str
) -> None:
    client, made = setup
    for method, path in ME_ROUTES:
        body = {"key": b64url(ANA_KEY.key.public_bytes)} if path.endswith("keys") else None
        refused(
            client.request(method, path, json=body, headers=made.auth(who)), 403, "not-a-patient"
        )
    assert made.services.refusals["not-a-patient"] == len(ME_ROUTES)
    assert made.journal.after(0) == []


def test_without_a_token_the_answer_is_401_with_www_authenticate(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    r = client.get("/api/v1/me/consents")
    refused(r, 401, "missing")
    assert r.headers["www-authenticate"] == "Bearer"
    tampered = made.token("ana")[:-4] + "AAAA"
    r = client.get("/api/v1/me/consents", headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401
    assert made.journal.after(0) == []  # nothing read, nothing recorded


# --- statements the patient signs ---------------------------------------------------------


def test_a_patient_grants_then_withdraws_and_reads_it_back(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    r = client.post(
        "/api/v1/me/consents", json={"message": signed(ANA_KEY, grant())}, headers=made.auth("ana")
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["seq"], out["state"], out["kind"]) == (0, "in-force", "signed")
    assert out["kid"] == ANA_KEY.key.kid.hex()
    assert out["grantee"] == {"kind": "app", "id": "telemed-1"}
    assert made.services.consents.in_force("p-17", TELEMED, "vital-signs", "TREAT", now_ms())

    withdrawal = ConsentStatement.withdrawal("p-17", 1, now_ms(), ends=0)
    w = client.post(
        "/api/v1/me/consents",
        json={"message": signed(ANA_KEY, withdrawal)},
        headers=made.auth("ana"),
    )
    assert w.status_code == 201
    assert w.json()["state"] == "withdrawal"
    assert (
        made.services.consents.in_force("p-17", TELEMED, "vital-signs", "TREAT", now_ms()) is None
    )

    mine = client.get("/api/v1/me/consents", headers=made.auth("ana")).json()
    assert mine["patient"] == "p-17"
    assert mine["next_seq"] == 2
    first, second = mine["statements"]
    assert (first["state"], first["withdrawn_by"]) == ("withdrawn", 1)
    assert (second["status"], second["ends"]) == ("inactive", 0)
    # the ledger-bound row is the patient's own COSE_Sign1, byte for byte
    row = made.journal.by_key(grant().ledger_key)
    assert row is not None
    assert row.kind is EntryKind.CONSENT_SIGNED
    SignedConsent.decode(row.body).verify(ANA_KEY.key)


def test_the_read_is_in_the_access_trail_and_fhir_is_a_bundle_of_consents(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    client.post(
        "/api/v1/me/consents", json={"message": signed(ANA_KEY, grant())}, headers=made.auth("ana")
    )
    bundle = client.get("/api/v1/me/consents?format=fhir", headers=made.auth("ana")).json()
    assert bundle["resourceType"] == "Bundle"
    (entry,) = bundle["entry"]
    consent = entry["resource"]
    assert consent["resourceType"] == "Consent"
    assert consent["status"] == "active"
    assert consent["patient"] == {"reference": "Patient/p-17"}
    assert consent["sourceAttachment"]["contentType"] == "application/cose"
    (event,) = made.services.trail.for_patient("p-17")
    a = event.access
    assert (a.agent.id, a.agent.role, a.outcome, a.reason) == ("ana", "patient", "permit", "self")
    assert a.data == ("consents",)
    assert a.route == "GET /api/v1/me/consents"


def test_no_trail_no_data(setup: tuple[TestClient, ConsentApp]) -> None:
    client, made = setup
    made.journal.close()
    r = client.get("/api/v1/me/consents", headers=made.auth("ana"))
    refused(r, 503, "journal-unavailable")
    assert "statements" not in r.json()


@pytest.mark.parametrize("path", ["/api/v1/me/keys", "/api/v1/me/consents"])
def test_a_journal_that_cannot_commit_records_nothing_and_says_so(
    setup: tuple[TestClient, ConsentApp], path: str
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    body = (
        {"key": b64url(ANA_NEW_KEY.key.public_bytes)}
        if path.endswith("keys")
        else {"message": signed(ANA_KEY, grant())}
    )
    made.journal.close()
    refused(client.post(path, json=body, headers=made.auth("ana")), 503, "journal-unavailable")
    assert made.services.refusals["journal-unavailable"] == 1


def test_the_schema_documents_each_refusal(setup: tuple[TestClient, ConsentApp]) -> None:
    client, _ = setup
    paths = client.get("/openapi.json").json()["paths"]
    assert "/me" not in paths
    for route in (
        "/api/v1/me/keys",
        "/api/v1/me/consents",
        "/api/v1/patients/{patient_id}/consents",
    ):
        responses = paths[route]["post"]["responses"]
        assert {"400", "401", "403", "409", "503"} <= set(responses)


def test_another_patients_statement_is_refused_even_if_they_signed_it(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ben", BEN_KEY)
    bens = signed(BEN_KEY, grant(patient="p-18"))
    r = client.post("/api/v1/me/consents", json={"message": bens}, headers=made.auth("ana"))
    refused(r, 403, "not-own-record")
    assert made.services.refusals["not-own-record"] == 1
    assert made.journal.of_kinds([EntryKind.CONSENT_SIGNED], "p-18") == []


def test_a_key_of_one_patient_does_not_sign_for_another(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    forged = signed(ANA_KEY, grant(patient="p-18"))
    r = client.post("/api/v1/me/consents", json={"message": forged}, headers=made.auth("ben"))
    refused(r, 400, "wrong-patient")


def _tampered(message: str) -> str:
    parsed = parse_sign1(b64url_decode(message))
    bad = bytes([parsed.signature[0] ^ 1]) + parsed.signature[1:]
    return b64url(encode_sign1(parsed.kid, parsed.payload, bad))


@pytest.mark.parametrize(
    ("message", "status", "reason"),
    [
        (lambda: "not base64!", 400, "malformed"),
        (lambda: b64url(b"\xa0"), 400, "malformed"),
        (lambda: signed(BEN_KEY, grant()), 400, "unknown-key"),
        (lambda: _tampered(signed(ANA_KEY, grant())), 400, "bad-signature"),
        (
            lambda: signed(ANA_KEY, grant(time_ms=now_ms() + MAX_CLOCK_SKEW_MS + 60_000)),
            400,
            "future-time",
        ),
        (
            lambda: signed(ANA_KEY, ConsentStatement.withdrawal("p-17", 1, now_ms(), ends=0)),
            409,
            "no-such-grant",
        ),
    ],
    ids=["not-base64", "not-cose", "unknown-key", "bad-signature", "future", "no-such-grant"],
)
def test_statements_the_store_refuses(
    setup: tuple[TestClient, ConsentApp], message: object, status: int, reason: str
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    body = {"message": message()}  # type: ignore[operator]
    refused(client.post("/api/v1/me/consents", json=body, headers=made.auth("ana")), status, reason)
    assert made.journal.of_kinds([EntryKind.CONSENT_SIGNED], "p-17") == []


def test_a_taken_number_and_a_second_withdrawal_are_conflicts(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    register(client, made, "ana", ANA_KEY)
    first = grant()

    def post(statement: ConsentStatement) -> httpx.Response:
        body = {"message": signed(ANA_KEY, statement)}
        return client.post("/api/v1/me/consents", json=body, headers=made.auth("ana"))

    assert post(first).status_code == 201
    assert post(first).status_code == 201
    other = ConsentStatement.grant(
        "p-17", 0, now_ms(), TELEMED, data=["8867-4"], purpose=["TREAT"], start_ms=now_ms()
    )
    refused(post(other), 409, "seq-taken")
    assert post(ConsentStatement.withdrawal("p-17", 1, now_ms(), 0)).status_code == 201
    refused(post(ConsentStatement.withdrawal("p-17", 2, now_ms(), 0)), 409, "already-withdrawn")


# --- staff on the patient's behalf --------------------------------------------------------


def staff_grant(reason: str = "patient asked by phone", **statement: object) -> dict[str, object]:
    now = now_ms()
    body: dict[str, object] = {
        "status": "active",
        "grantee": {"kind": "app", "id": "telemed-1"},
        "data": ["vital-signs"],
        "purpose": ["TREAT"],
        "start_ms": now,
        "end_ms": now + DAY,
    }
    return {"reason": reason, "statement": body | statement}


@pytest.mark.parametrize("who", ["dr-cho", "ada"])
def test_staff_record_a_consent_naming_who_and_why(
    setup: tuple[TestClient, ConsentApp], who: str
) -> None:
    client, made = setup
    r = client.post("/api/v1/patients/p-17/consents", json=staff_grant(), headers=made.auth(who))
    assert r.status_code == 201, r.text
    out = r.json()
    role = "clinician" if who == "dr-cho" else "admin"
    assert out["recorded_by"] == {"by": who, "role": role, "reason": "patient asked by phone"}
    assert (out["kind"], out["seq"], out["state"]) == ("recorded", 0, "in-force")
    assert out["kid"] is None
    w = client.post(
        "/api/v1/patients/p-17/consents",
        json={
            "reason": "patient withdrew at the desk",
            "statement": {"status": "inactive", "ends": 0},
        },
        headers=made.auth(who),
    )
    assert w.status_code == 201
    assert w.json()["seq"] == 1
    assert made.services.consents.state("p-17").withdrawal_of("p-17", 0) is not None


def test_patients_are_not_staff_not_for_themselves_nor_for_another(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    for path in ("/api/v1/patients/p-17/consents", "/api/v1/patients/p-18/consents"):
        refused(client.post(path, json=staff_grant(), headers=made.auth("ana")), 403, "not-staff")
    assert made.services.refusals["not-staff"] == 2
    assert made.journal.after(0) == []


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (staff_grant(grantee=None), 400, "malformed"),
        (staff_grant(purpose=["treat"]), 400, "malformed"),
        (staff_grant(end_ms=1), 400, "malformed"),
        (
            {"reason": "x", "statement": {"status": "inactive", "seq": 3, "ends": 1}},
            409,
            "no-such-grant",
        ),
        (staff_grant(reason=" leading space"), 400, "invalid-recorder"),
    ],
)
def test_staff_statements_that_are_refused(
    setup: tuple[TestClient, ConsentApp], body: dict[str, object], status: int, reason: str
) -> None:
    client, made = setup
    r = client.post("/api/v1/patients/p-17/consents", json=body, headers=made.auth("dr-cho"))
    refused(r, status, reason)
    assert made.journal.after(0) == []


def test_staff_requests_without_a_reason_or_with_a_bad_patient_id_do_not_validate(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    no_reason = {"statement": staff_grant()["statement"]}
    r = client.post("/api/v1/patients/p-17/consents", json=no_reason, headers=made.auth("dr-cho"))
    assert r.status_code == 422
    r = client.post(
        "/api/v1/patients/..%2Fx/consents", json=staff_grant(), headers=made.auth("dr-cho")
    )
    assert r.status_code in (404, 422)
    assert made.journal.after(0) == []


def test_the_documented_seq_bound_is_the_one_enforced(setup: tuple[TestClient, ConsentApp]) -> None:
    # FastAPI writes a bound as a double: 2^63 - 1 read 2^63, and a schema-driven client
    # (schemathesis) sent 2^63 + 191 as valid. The bound is now exact in any JSON client.
    client, made = setup
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StatementIn"]
    for name in ("seq", "ends"):
        (bounded,) = (s for s in schema["properties"][name]["anyOf"] if s["type"] == "integer")
        assert bounded["maximum"] == MAX_JSON_SEQ == 2**53 - 1
    path = "/api/v1/patients/p-17/consents"
    over = client.post(path, json=staff_grant(seq=MAX_JSON_SEQ + 1), headers=made.auth("dr-cho"))
    assert over.status_code == 422
    at = client.post(path, json=staff_grant(seq=MAX_JSON_SEQ), headers=made.auth("dr-cho"))
    assert at.status_code != 422, at.text


# --- apps and the page --------------------------------------------------------------------


def test_the_apps_a_patient_may_grant_leave_out_disabled_ones(
    setup: tuple[TestClient, ConsentApp],
) -> None:
    client, made = setup
    r = client.get("/api/v1/me/apps", headers=made.auth("ana"))
    assert r.json() == [{"client_id": "telemed-1", "name": "Telemed One"}]


def test_the_page_is_served_at_me(setup: tuple[TestClient, ConsentApp]) -> None:
    client, _ = setup
    r = client.get("/me")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'src="/static/patient.js"' in r.text
    assert "<style" not in r.text
    assert " style=" not in r.text
