"""The compliance check over a real ledger: every permitted access against the consents and
roles in force at its position in the log; break-glass accesses listed; findings, not raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from access.compliance import ComplianceReport, UserRole, check_compliance, consents_at
from access.consent import ConsentStatement, sign_consent
from access.consent_state import ConsentState
from access.consent_store import ConsentStore
from access.journal import Journal
from access.trail import DENY, Access, AccessEvent, AccessTrail
from devices.cose import encode_sign1, parse_sign1
from ledger.appends import NewEntry
from ledger.entries import EntryKind, LedgerEntry
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from tests.access_helpers import (
    APP,
    DAY,
    NOW,
    PATIENT_KEY,
    app_read,
    grant,
    journal,
    signed_grant,
    signer,
    user_read,
)

DIRECTORY = {
    "u-doc-1": UserRole("clinician", care_team=frozenset({"p-17", "p-18"})),
    "u-nurse-3": UserRole("clinician", care_team=frozenset({"p-17"})),
    "u-admin": UserRole("admin"),
    "u-p17": UserRole("patient", patient_id="p-17"),
}


def roles(user: str, at_ms: int) -> UserRole | None:
    return DIRECTORY.get(user)


class World:
    """An API (journal, consent store, trail) and the ingestor's ledger it is copied into."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "ledger.db"
        self.ledger = Ledger(self.path, load_or_create_signer(tmp_path / "k", "t.example/l"))
        self.journal: Journal = journal(tmp_path)
        self.consents = ConsentStore(self.journal)
        self.trail = AccessTrail(self.journal, self.consents)
        self.consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)

    def access(self, access: Access) -> AccessEvent:
        return self.trail.record(access)

    def copy(self) -> None:
        pending = self.journal.pending(self.ledger.log.meta(self.journal.cursor_name) or 0, NOW)
        self.ledger.append(pending.entries, meta=pending.meta)

    def check(self) -> ComplianceReport:
        self.copy()
        reader = LedgerReader(self.path)
        try:
            return check_compliance(reader.log.entries(0, reader.log.stored_size()), roles)
        finally:
            reader.close()

    def index(self, event: AccessEvent) -> str:
        return f"entry {self.ledger.log.index_of(event.ledger_key)}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def test_accesses_allowed_by_consent_and_role_pass(world: World) -> None:
    world.consents.record_signed(signed_grant().message, NOW - DAY)
    world.access(app_read())
    world.access(user_read("u-doc-1", "clinician", ("p-17", "p-18")))
    world.access(user_read("u-p17", "patient", ("p-17",), reason="self"))
    world.access(app_read(("p-18",), outcome=DENY, reason="no-consent", consents=[]))
    report = world.check()
    assert report.findings == []
    assert (report.consents, report.accesses, report.permits, report.refusals) == (1, 4, 3, 1)


def test_an_app_read_after_the_withdrawal_is_a_finding(world: World) -> None:
    world.consents.record_signed(signed_grant().message, NOW - DAY)
    allowed = world.access(app_read())
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    world.consents.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    # The API would refuse; a server that served anyway is caught by the auditor.
    leaked = world.access(app_read(consents=[]))
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [("consent", world.index(leaked))]
    assert "without a consent in force" in report.findings[0].detail
    assert world.index(allowed) not in [f.where for f in report.findings]


@pytest.mark.parametrize(
    ("access", "check"),
    [
        (app_read(data=["2339-0"], consents=[]), "consent"),  # glucose is not granted
        (app_read(purpose=["HMARKT"], consents=[]), "consent"),  # nor marketing
        (app_read(purpose=[], consents=[]), "consent"),  # nor no purpose at all
        (user_read("u-nurse-3", "clinician", ("p-18",)), "role"),  # outside the care team
        (user_read("u-p17", "patient", ("p-17", "p-18"), reason="self"), "role"),
        (user_read("u-admin", "admin", ("p-17",)), "role"),  # admins read no vitals
        (user_read("u-admin", "clinician", ("p-17",)), "role"),  # a role the user lacked
        (user_read("u-gone", "clinician", ("p-17",)), "role"),  # nobody the directory knows
        (user_read("u-nurse-3", "clinician", ("p-18",), reason="break-glass"), "break-glass"),
    ],
)
def test_a_permit_the_rules_did_not_allow_is_a_finding(
    world: World, access: Access, check: str
) -> None:
    world.consents.record_signed(signed_grant().message, NOW - DAY)
    event = world.access(access)
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [(check, world.index(event))]


def test_break_glass_is_listed_not_refused(world: World) -> None:
    glass = world.access(
        user_read(
            "u-nurse-3", "clinician", ("p-18",), reason="break-glass", break_glass="collapsed"
        )
    )
    report = world.check()
    assert report.findings == []
    assert [(b.index, b.event) for b in report.break_glass] == [
        (world.ledger.log.index_of(glass.ledger_key), glass)
    ]


def _forged_by_operator() -> bytes:
    return sign_consent(signer("operator"), grant(0)).message


def _bad_signature() -> bytes:
    message = parse_sign1(signed_grant().message)  # the patient's kid, another signature
    return encode_sign1(message.kid, message.payload, bytes(64))


@pytest.mark.parametrize("forge", [_forged_by_operator, _bad_signature])
def test_a_consent_the_operator_forged_allows_nothing(
    world: World, forge: Callable[[], bytes]
) -> None:
    """A grant the patient's registered key did not sign is a finding, and so is every access
    that relied on it."""
    world.copy()
    world.ledger.append(
        [
            NewEntry(
                grant(0).ledger_key,
                LedgerEntry(EntryKind.CONSENT_SIGNED, NOW, forge()).encode(),
            )
        ]
    )
    read = world.access(app_read(consents=[]))
    report = world.check()
    assert [f.check for f in report.findings] == ["consent signature", "consent"]
    assert report.findings[1].where == world.index(read)


def test_a_consent_recorded_by_someone_not_staff_allows_nothing(world: World) -> None:
    world.consents.record_for_patient(grant(0), "u-p17", "clinician", "said so", NOW - DAY)
    world.access(app_read())
    report = world.check()
    assert [f.check for f in report.findings] == ["consent recorder", "consent"]


def test_a_recorded_consent_by_staff_allows(world: World) -> None:
    world.consents.record_for_patient(grant(0), "u-nurse-3", "clinician", "phone", NOW - DAY)
    world.access(app_read())
    assert world.check().findings == []


def test_a_malformed_leaf_of_an_access_kind_is_a_finding(world: World) -> None:
    world.copy()
    world.ledger.append(
        [
            NewEntry(
                AccessEvent("abc", 1, app_read()).ledger_key,
                LedgerEntry(EntryKind.ACCESS, NOW, b"\xa0").encode(),
            )
        ]
    )
    report = world.check()
    assert [f.check for f in report.findings] == ["entry"]


def test_the_consents_in_force_at_any_position_of_the_log(world: World) -> None:
    world.consents.record_signed(signed_grant().message, NOW - DAY)
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    world.consents.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    world.copy()
    withdrawn_at = world.ledger.log.index_of(end.ledger_key)
    assert withdrawn_at is not None
    reader = LedgerReader(world.path)
    try:

        def state_at(position: int) -> ConsentState:
            return consents_at(reader.log.entries(0, reader.log.stored_size()), position, roles)

        assert state_at(withdrawn_at).in_force("p-17", APP, "8867-4", "TREAT", NOW)
        assert state_at(withdrawn_at + 1).in_force("p-17", APP, "8867-4", "TREAT", NOW) is None
        assert state_at(withdrawn_at - 1).in_force("p-17", APP, "8867-4", "TREAT", NOW) is None
    finally:
        reader.close()
