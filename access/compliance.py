"""The compliance check: was every recorded access allowed when it happened?

One pass over the ledger's entries in order, replaying patient keys, consents and directory
changes as it goes (access.consent_state, the rules the API decides by; access.directory_history,
who was a clinician, patient or admin and whose care team held which patients), so each access
event is judged against exactly the consents, roles and care teams in force at its position in
the log. Findings are returned, never raised: ``vitaltrail audit`` prints them beside the
ledger auditor's.

Checked: a patient-signed consent is signed by a key registered to that patient earlier in the
log and not revoked; a staff-recorded one names an enabled staff member who had that role; a
withdrawal ends a grant made before it; a directory change names users and teams the log has.
A permitted access by an app (or by anyone on the ground of a consent) is covered, for every
patient, data class and purpose it names, by a grant in force at its position and time; a
permitted access by a user was by a user the log knows (else ``role unknown``), not disabled,
with the role it claims; a patient read only their own data, an admin read none, and a
clinician read their care team's patients or broke the glass with a reason. Refusals are
counted, not judged; break-glass accesses are listed for review.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from access.consent import KINDS as CONSENT_KINDS
from access.consent import Grantee, RecordedConsent, SignedConsent, decode_consent
from access.consent_state import ConsentState
from access.directory_changes import DirectoryChange
from access.directory_history import DirectoryHistory, UserRole
from access.errors import AccessRecordError, ConsentError
from access.patient_keys import KINDS as KEY_KINDS
from access.patient_keys import PatientKeyStatement
from access.trail import BREAK_GLASS, PERMIT, AccessEvent
from ledger.entries import EntryError, EntryKind, LedgerEntry

CLINICIAN, PATIENT, ADMIN = "clinician", "patient", "admin"
STAFF_ROLES = frozenset({CLINICIAN, ADMIN})  # who may record a consent for a patient
CONSENT_REASON = "consent"  # the reason code of a permit granted on a consent
MAX_FINDINGS = 1000


@dataclass(frozen=True)
class Finding:
    check: str  # patient key, consent signature, consent recorder, consent, role, trail ...
    where: str  # "entry 17"
    detail: str


@dataclass(frozen=True)
class BreakGlassAccess:
    index: int
    event: AccessEvent


@dataclass
class ComplianceReport:
    consents: int = 0
    directory_changes: Counter[str] = field(default_factory=Counter)  # by change
    accesses: int = 0
    permits: int = 0
    refusals: int = 0
    findings: list[Finding] = field(default_factory=list)
    break_glass: list[BreakGlassAccess] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, index: int, detail: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(check, f"entry {index}", detail))


@dataclass
class _Key:
    statement: PatientKeyStatement
    revoked_at: int | None = None


class _Replay:
    def __init__(self, report: ComplianceReport) -> None:
        self.report = report
        self.keys: dict[bytes, _Key] = {}
        self.consents = ConsentState()
        self.directory = DirectoryHistory()
        self.last_seq: dict[str, int] = {}  # trail -> the last access seq seen

    def entry(self, index: int, entry: LedgerEntry) -> None:
        try:
            if entry.kind in KEY_KINDS:
                self.patient_key(index, PatientKeyStatement.from_entry(entry))
            elif entry.kind in CONSENT_KINDS:
                self.consent(index, entry)
            elif entry.kind is EntryKind.ACCESS:
                self.access(index, AccessEvent.decode(entry.body))
            elif entry.kind is EntryKind.DIRECTORY_CHANGE:
                self.directory_change(index, DirectoryChange.decode(entry.body))
        except AccessRecordError as exc:
            self.report.add("entry", index, str(exc))

    def patient_key(self, index: int, statement: PatientKeyStatement) -> None:
        kid = statement.key.kid
        known = self.keys.get(kid)
        if statement.kind is EntryKind.PATIENT_KEY_REGISTERED:
            if known is not None:
                self.report.add("patient key", index, "a patient key registered a second time")
            else:
                self.keys[kid] = _Key(statement)
        elif known is None or known.statement.patient_id != statement.patient_id:
            self.report.add("patient key", index, "revokes a key not registered to the patient")
        elif known.revoked_at is not None:
            self.report.add("patient key", index, "a patient key revoked a second time")
        else:
            known.revoked_at = index

    def directory_change(self, index: int, record: DirectoryChange) -> None:
        self.report.directory_changes[record.change.change] += 1
        problem = self.directory.apply(record.change)
        if problem is not None:
            self.report.add("directory", index, problem)

    def consent(self, index: int, entry: LedgerEntry) -> None:
        self.report.consents += 1
        consent = decode_consent(entry.kind, entry.body)
        statement = consent.statement
        if isinstance(consent, SignedConsent):
            key = self.keys.get(consent.kid)
            if key is None or key.revoked_at is not None:
                state = "revoked" if key else "not registered before it"
                self.report.add("consent signature", index, f"signed by a key {state}")
                return
            if key.statement.patient_id != statement.patient_id:
                self.report.add("consent signature", index, "signed by another patient's key")
                return
            try:
                consent.verify(key.statement.key)
            except ConsentError as exc:
                self.report.add("consent signature", index, str(exc))
                return
        elif isinstance(consent, RecordedConsent):
            who = self.directory.role_of(consent.recorder)
            if (
                who is None
                or who.disabled
                or who.role != consent.role
                or who.role not in STAFF_ROLES
            ):
                self.report.add(
                    "consent recorder", index, "recorded by someone who was not staff in that role"
                )
                return
        problem = self.consents.apply(statement, index)
        if problem is not None:
            self.report.add("consent", index, f"statement {statement.seq}: {problem}")

    def access(self, index: int, event: AccessEvent) -> None:
        report = self.report
        report.accesses += 1
        last = self.last_seq.get(event.trail, 0)
        if event.seq <= last:
            report.add("trail", index, f"access {event.seq} follows access {last} of its trail")
        self.last_seq[event.trail] = max(last, event.seq)
        a = event.access
        if a.outcome != PERMIT:
            report.refusals += 1
            return
        report.permits += 1
        if a.is_break_glass or a.reason == BREAK_GLASS:
            report.break_glass.append(BreakGlassAccess(index, event))
        who = self.directory.role_of(a.agent.id) if a.agent.kind == "user" else None
        if who is not None and who.disabled:
            report.add("disabled user", index, "read by a user disabled before it")
        elif a.agent.kind == "app" or a.reason == CONSENT_REASON:
            self.by_consent(index, event)
        else:
            self.by_role(index, event, who)

    def by_consent(self, index: int, event: AccessEvent) -> None:
        a = event.access
        if not (a.patients and a.data and a.purpose):
            self.report.add("consent", index, "a permit on consent names patients, data, purpose")
            return
        grantee = Grantee(a.agent.kind, a.agent.id)
        for patient in a.patients:
            for data_class in a.data:
                for purpose in a.purpose:
                    if self.consents.in_force(patient, grantee, data_class, purpose, a.time_ms):
                        continue
                    self.report.add(
                        "consent",
                        index,
                        f"{grantee} read {data_class} of {patient} for {purpose}"
                        " without a consent in force",
                    )

    def by_role(self, index: int, event: AccessEvent, who: UserRole | None) -> None:
        a = event.access
        if who is None:
            self.report.add("role unknown", index, "the log has no record of this user before it")
            return
        if who.role != a.agent.role:
            self.report.add("role", index, f"the user did not have the role {a.agent.role!r}")
            return
        if who.role == PATIENT:
            others = set(a.patients) - {who.patient_id}
            if others:
                self.report.add("role", index, f"a patient read {len(others)} other patient(s)")
        elif who.role == CLINICIAN:
            if a.is_break_glass:
                return  # listed for review
            if a.reason == BREAK_GLASS:
                self.report.add("break-glass", index, "a break-glass permit without a reason")
            elif set(a.patients) - who.care_team:
                self.report.add("role", index, "a clinician read patients outside the care team")
        else:
            self.report.add("role", index, f"the role {who.role!r} reads no patient data")


def consents_at(entries: Iterable[tuple[int, bytes]], position: int) -> ConsentState:
    """The consents in force just before ledger index ``position``, each statement verified as
    :func:`check_compliance` verifies it (a forged or unauthorised one grants nothing)."""
    replay = _Replay(ComplianceReport())
    for index, data in entries:
        if index >= position:
            break
        try:
            entry = LedgerEntry.decode(data)
        except EntryError:
            continue
        if entry.kind is not EntryKind.ACCESS:
            replay.entry(index, entry)
    return replay.consents


def check_compliance(entries: Iterable[tuple[int, bytes]]) -> ComplianceReport:
    """Check the ledger's ``(index, leaf data)`` pairs, in log order (e.g.
    ``reader.log.entries(0, size)``). Leaves that are not entries are the ledger auditor's
    to report; they are passed over here."""
    report = ComplianceReport()
    replay = _Replay(report)
    for index, data in entries:
        try:
            entry = LedgerEntry.decode(data)
        except EntryError:
            continue
        replay.entry(index, entry)
    return report
