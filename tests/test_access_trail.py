"""The access trail: one encoding per event, durable before the data leaves, append-only, and
exported as an IHE BALP-shaped FHIR R4 AuditEvent."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from access.consent import ConsentStatement, sign_consent
from access.consent_store import ConsentStore
from access.errors import AccessEventError, ConsentRefused, JournalError
from access.fhir import LEDGER_INDEX, audit_event
from access.journal import Journal
from access.trail import CREATE, DENY, SEARCH, Access, AccessEvent, AccessTrail, Agent
from tests.access_helpers import DAY, NOW, PATIENT_KEY, app_read, journal, signed_grant, user_read


@pytest.fixture
def trail(tmp_path: Path) -> AccessTrail:
    return AccessTrail(journal(tmp_path))


def test_an_event_has_one_deterministic_encoding() -> None:
    event = AccessEvent("0123456789abcdef", 7, app_read(("p-2", "p-1"), request_id="req-9"))
    data = event.encode()
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    assert AccessEvent.decode(data) == event
    assert event.access.patients == ("p-1", "p-2")
    assert event.ledger_key == ("access/0123456789abcdef", 7)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 0},
        {"trail": "Not A Code"},
        {"patients": ["p-2", "p-1"]},
        {"data": ["vital-signs", "vital-signs"]},
        {"outcome": "maybe"},
        {"interaction": "delete"},
        {"route": ""},
        {"break_glass": "line\nbreak"},
        {"agent": {"kind": "robot", "id": "x", "role": "app"}},
        {"agent": {"kind": "app", "id": "x", "role": "app", "password": "hunter2"}},
        {"consents": [["p-1", -1]]},
        {"unknown": 1},
    ],
)
def test_a_malformed_event_is_an_access_event_error(change: dict[str, object]) -> None:
    doc = dict(cbor2.loads(AccessEvent("abc", 1, app_read()).encode())) | change
    with pytest.raises(AccessEventError):
        AccessEvent.decode(cbor2.dumps(doc, canonical=True))


def test_record_returns_once_the_event_is_committed(trail: AccessTrail, tmp_path: Path) -> None:
    first = trail.record(app_read(consents=[]))
    second = trail.record(user_read("u-doc-1", "clinician", ("p-17",)))
    assert (first.seq, second.seq) == (1, 2)
    other = sqlite3.connect(tmp_path / "access-journal.sqlite")  # another process's view
    bodies = [row[0] for row in other.execute("SELECT body FROM journal ORDER BY seq")]
    assert [AccessEvent.decode(b) for b in bodies] == [first, second]
    assert trail.for_patient("p-17") == [first, second]
    assert trail.for_patient("p-18") == []


def test_the_journal_syncs_every_commit(trail: AccessTrail) -> None:
    db = trail._journal._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_no_trail_no_data(tmp_path: Path) -> None:
    """A journal that cannot commit raises: the caller serves nothing."""
    trail = AccessTrail(Journal(tmp_path / "j.sqlite", busy_timeout_s=0.2))
    trail.record(app_read(consents=[]))
    blocker = sqlite3.connect(tmp_path / "j.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(JournalError):
        trail.record(app_read(consents=[]))
    assert trail.unrecorded == {"journal-error": 1}
    blocker.execute("ROLLBACK")
    assert trail.record(app_read(consents=[])).seq == 2  # nothing half-written


def test_the_journal_refuses_to_change_a_line(trail: AccessTrail, tmp_path: Path) -> None:
    trail.record(app_read(consents=[]))
    db = sqlite3.connect(tmp_path / "access-journal.sqlite")
    for sql in (
        "UPDATE journal SET body = x'00'",
        "DELETE FROM journal",
        "DELETE FROM journal_patients",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)


def test_a_permit_on_a_consent_withdrawn_since_the_decision_is_not_recorded(
    tmp_path: Path,
) -> None:
    j = journal(tmp_path)
    consents = ConsentStore(j)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    trail = AccessTrail(j, consents)
    decided = app_read()  # the API decided on grant 0 ...
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    consents.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)  # ... then it ended
    with pytest.raises(ConsentRefused) as refused:
        trail.record(decided)
    assert refused.value.reason == "withdrawn"
    assert trail.unrecorded == {"withdrawn": 1}
    assert trail.for_patient("p-17") == []
    refusal = trail.record(app_read(outcome=DENY, reason="no-consent", consents=[]))
    assert trail.for_patient("p-17") == [refusal]


def _valid_r4(resource: dict[str, object]) -> FhirAuditEvent:
    return FhirAuditEvent.model_validate(resource)


def test_an_app_read_exports_as_a_balp_patient_read() -> None:
    event = AccessEvent("abc", 4, app_read(request_id="req-1"))
    resource = audit_event(event, ledger_index=40)
    model = _valid_r4(resource)
    assert (model.action, model.outcome) == ("R", "0")
    assert resource["type"]["code"] == "rest"
    assert resource["subtype"][0]["code"] == "read"
    requestor = resource["agent"][0]
    assert requestor["requestor"] is True
    assert requestor["who"]["identifier"]["value"] == "telemed-1"
    assert requestor["policy"] == ["urn:ietf:params:oauth:jti:jti-1"]
    assert [p["coding"][0]["code"] for p in requestor["purposeOfUse"]] == ["TREAT"]
    entities = resource["entity"]
    assert entities[0]["what"] == {"reference": "Patient/p-17"}
    assert entities[0]["role"]["code"] == "1"
    consent = next(e for e in entities if e["type"]["code"] == "Consent")
    assert consent["what"]["identifier"]["value"] == "p-17/0"
    assert entities[-1]["type"]["code"] == "XrequestId"
    assert {"url": LEDGER_INDEX, "valueUnsignedInt": 40} in resource["extension"]


def test_a_refused_ward_search_with_break_glass_exports_as_a_patient_query() -> None:
    access = user_read(
        "u-doc-1",
        "clinician",
        ("p-1", "p-2"),
        interaction=SEARCH,
        outcome=DENY,
        reason="not-in-care-team",
        break_glass="patient collapsed in corridor",
        route="GET /api/v1/wards/{ward}/patients",
    )
    resource = audit_event(AccessEvent("abc", 5, access))
    model = _valid_r4(resource)
    assert (model.action, model.outcome) == ("E", "4")
    assert resource["subtype"][0]["code"] == "search-type"
    assert resource["agent"][0]["type"]["coding"][0]["code"] == "UserOauthAgent"
    assert resource["agent"][1]["who"]["identifier"]["value"] == "vitaltrail-web"
    query = next(e for e in resource["entity"] if "query" in e)
    assert query["role"]["code"] == "24"
    btg = resource["purposeOfEvent"][-1]
    assert btg["coding"][0]["code"] == "BTG"
    assert btg["text"] == "patient collapsed in corridor"
    patients = [e["what"]["reference"] for e in resource["entity"] if e["role"]["code"] == "1"]
    assert patients == ["Patient/p-1", "Patient/p-2"]


def test_the_ingestor_does_not_start_a_journal_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no access journal"):
        Journal(tmp_path / "api" / "access-journal.sqlite", create=False)
    made = Journal(tmp_path / "api" / "access-journal.sqlite")
    opened = Journal(tmp_path / "api" / "access-journal.sqlite", create=False)
    assert opened.journal_id == made.journal_id


def test_a_file_that_is_not_a_journal_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError):
        Journal(tmp_path / "junk.sqlite")


@pytest.mark.parametrize(
    "access",
    [
        app_read(consents=[("p-17", 5)]),  # a grant that was never made
        app_read(purpose=["HMARKT"]),  # a purpose the grant does not name
        app_read(data=["2339-0"]),  # data it does not cover
        app_read(time_ms=NOW + 60 * DAY),  # after its period
        app_read(agent=Agent("app", "another-app", "app")),  # another grantee
        app_read(purpose=[]),  # no purpose to check
    ],
)
def test_a_permit_its_named_consents_do_not_allow_is_not_recorded(
    tmp_path: Path, access: Access
) -> None:
    j = journal(tmp_path)
    consents = ConsentStore(j)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    trail = AccessTrail(j, consents)
    with pytest.raises(ConsentRefused) as refused:
        trail.record(access)
    assert refused.value.reason == "not-in-force"
    assert trail.unrecorded == {"not-in-force": 1}
    assert trail.record(app_read()).seq == 3  # what the grant allows is recorded


def test_a_documented_observation_exports_as_a_create_and_round_trips() -> None:
    access = user_read(
        "u-doc-1", "clinician", ("p-1",), interaction=CREATE,
        route="POST /api/v1/patients/{patient_id}/documented",
    )  # fmt: skip
    event = AccessEvent("abc", 6, access)
    assert AccessEvent.decode(event.encode()) == event
    resource = audit_event(event)
    assert (_valid_r4(resource).action, resource["subtype"][0]["code"]) == ("C", "create")
    with pytest.raises(AccessEventError, match="interaction"):
        AccessEvent("abc", 7, replace(access, interaction="delete")).encode()
