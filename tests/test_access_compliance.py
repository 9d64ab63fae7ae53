"""The compliance check over a real ledger: every permitted access against the consents, roles
and care teams in force at its position in the log (the directory's changes are in the log too);
break-glass accesses listed; findings, not raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from access.care_teams import CareTeamStore
from access.compliance import ComplianceReport, check_compliance, consents_at
from access.consent import ConsentStatement, sign_consent
from access.consent_state import ConsentState
from access.consent_store import ConsentStore
from access.directory import Directory
from access.directory_changes import Change, DirectoryChange
from access.errors import SignInError
from access.journal import Journal
from access.trail import DENY, Access, AccessEvent, AccessTrail
from access.users import Role, UserStore
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

PASSWORD = "correct horse battery"


def open_directory(tmp_path: Path, into: Journal) -> Directory:
    """The user directory and care teams of ``tmp_path``, changed by an administrator, each
    change journaled in ``into``."""
    path = tmp_path / "access.db"
    users = UserStore(path, hasher=PasswordHasher.from_parameters(CHEAPEST))
    return Directory(users, CareTeamStore(path), into, "u-admin")


def staff_the_ward(directory: Directory) -> None:
    """Two clinicians, an admin and a patient; ward-a holds p-17 and p-18, ward-b p-17."""
    staff: tuple[tuple[str, Role], ...] = (
        ("u-doc-1", "clinician"),
        ("u-nurse-3", "clinician"),
        ("u-admin", "admin"),
    )
    for user, role in staff:
        directory.add_user(user, role, PASSWORD)
    directory.add_user("u-p17", "patient", PASSWORD, patient_id="p-17")
    for team, doctor, patients in (
        ("ward-a", "u-doc-1", "p-17 p-18"),
        ("ward-b", "u-nurse-3", "p-17"),
    ):
        directory.create_team(team)
        directory.add_member(team, doctor)
        for patient in patients.split():
            directory.add_patient(team, patient)


class World:
    """An API (journal, consent store, trail), its directory, and the ingestor's ledger they
    are copied into."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "ledger.db"
        self.ledger = Ledger(self.path, load_or_create_signer(tmp_path / "k", "t.example/l"))
        self.journal: Journal = journal(tmp_path)
        self.consents = ConsentStore(self.journal)
        self.trail = AccessTrail(self.journal, self.consents)
        self.directory = open_directory(tmp_path, self.journal)
        staff_the_ward(self.directory)
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
            return check_compliance(reader.log.entries(0, reader.log.stored_size()))
        finally:
            reader.close()

    def index(self, event: AccessEvent) -> str:
        return f"entry {self.ledger.log.index_of(event.ledger_key)}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.ledger.close()
    w.directory.users.close()
    w.directory.teams.close()


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
        (user_read("u-gone", "clinician", ("p-17",)), "role unknown"),  # nobody the log knows
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
            return consents_at(reader.log.entries(0, reader.log.stored_size()), position)

        assert state_at(withdrawn_at).in_force("p-17", APP, "8867-4", "TREAT", NOW)
        assert state_at(withdrawn_at + 1).in_force("p-17", APP, "8867-4", "TREAT", NOW) is None
        assert state_at(withdrawn_at - 1).in_force("p-17", APP, "8867-4", "TREAT", NOW) is None
    finally:
        reader.close()


def test_an_assignment_removed_after_a_legitimate_read_leaves_the_read_legitimate(
    world: World,
) -> None:
    world.access(user_read("u-nurse-3", "clinician", ("p-17",)))
    world.directory.remove_member("ward-b", "u-nurse-3")
    assert world.directory.teams.patients_of("u-nurse-3") == frozenset()  # today: no patients
    assert world.check().findings == []  # then: p-17 was hers


def test_a_read_after_the_assignment_was_removed_is_a_finding(world: World) -> None:
    world.directory.remove_patient("ward-b", "p-17")
    late = world.access(user_read("u-nurse-3", "clinician", ("p-17",)))
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [("role", world.index(late))]
    assert "outside the care team" in report.findings[0].detail


def test_an_assignment_added_and_removed_around_a_read_is_in_the_ledger(world: World) -> None:
    """An administrator cannot quietly widen a care team for one read: the read is allowed
    where it stands, and the ledger shows the assignment made before it and taken after it,
    by whom."""
    world.directory.add_patient("ward-b", "p-18")
    read = world.access(user_read("u-nurse-3", "clinician", ("p-18",)))
    world.directory.remove_patient("ward-b", "p-18")
    report = world.check()
    assert report.findings == []
    assert (
        report.directory_changes["patient-added"],
        report.directory_changes["patient-removed"],
    ) == (4, 1)
    at = world.ledger.log.index_of(read.ledger_key)
    assert at is not None
    around = [LedgerEntry.decode(d) for _, d in world.ledger.log.entries(at - 1, at + 2)]
    assert [e.kind for e in around] == [
        EntryKind.DIRECTORY_CHANGE,
        EntryKind.ACCESS,
        EntryKind.DIRECTORY_CHANGE,
    ]
    added, removed = (DirectoryChange.decode(around[i].body).change for i in (0, 2))
    assert (added.change, added.team, added.patient, added.by) == (
        "patient-added",
        "ward-b",
        "p-18",
        "u-admin",
    )
    assert (removed.change, removed.patient) == ("patient-removed", "p-18")


def test_a_disabled_users_read_is_a_finding_and_their_earlier_reads_are_not(world: World) -> None:
    world.access(user_read("u-doc-1", "clinician", ("p-18",)))
    world.directory.set_disabled("u-doc-1")
    late = world.access(user_read("u-doc-1", "clinician", ("p-18",)))
    world.directory.set_disabled("u-doc-1", False)
    world.access(user_read("u-doc-1", "clinician", ("p-18",)))  # enabled again
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [("disabled user", world.index(late))]


def test_a_consent_recorded_by_disabled_staff_allows_nothing(world: World) -> None:
    world.directory.set_disabled("u-nurse-3")
    world.consents.record_for_patient(grant(0), "u-nurse-3", "clinician", "phone", NOW - DAY)
    world.access(app_read())
    assert [f.check for f in world.check().findings] == ["consent recorder", "consent"]


def test_a_ledger_without_directory_changes_finds_roles_unknown(tmp_path: Path) -> None:
    """A log from before the directory was recorded: every user read is a finding, no
    traceback; an app's read on a consent is judged as ever."""
    the_journal = journal(tmp_path)
    consents = ConsentStore(the_journal)
    trail = AccessTrail(the_journal, consents)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    trail.record(app_read())
    trail.record(user_read("u-doc-1", "clinician", ("p-17",)))
    trail.record(user_read("u-p17", "patient", ("p-17",), reason="self"))
    pending = the_journal.pending(0, NOW)
    report = check_compliance((i, e.data) for i, e in enumerate(pending.entries))
    assert [f.check for f in report.findings] == ["role unknown", "role unknown"]
    assert report.directory_changes.total() == 0


def test_a_directory_change_the_directory_could_not_have_made_is_a_finding(world: World) -> None:
    world.copy()
    forged = DirectoryChange(
        "f0f0f0f0f0f0f0f0",
        1,
        Change(NOW, "u-admin", "member-added", team="no-such-ward", user="u-doc-1"),
    )
    world.ledger.append(
        [
            NewEntry(
                forged.ledger_key,
                LedgerEntry(EntryKind.DIRECTORY_CHANGE, NOW, forged.encode()).encode(),
            )
        ]
    )
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [
        ("directory", f"entry {world.ledger.log.index_of(forged.ledger_key)}")
    ]
    assert "care team the directory does not have" in report.findings[0].detail


def test_a_user_of_the_hospitals_provider_is_judged_once_registered(world: World) -> None:
    """Keycloak's users sign in there; registered here by their ``sub`` with no password,
    their role and care teams are in the log like anyone's - and they cannot sign in here."""
    sub = "0f8fad5b-d9cb-469f-a165-70867728950e"
    before = world.access(user_read(sub, "clinician", ("p-18",)))
    world.directory.add_user(sub, "clinician", None)
    world.directory.add_member("ward-a", sub)
    world.access(user_read(sub, "clinician", ("p-18",)))
    report = world.check()
    assert [(f.check, f.where) for f in report.findings] == [("role unknown", world.index(before))]
    with pytest.raises(SignInError):
        world.directory.users.authenticate(sub, PASSWORD)
