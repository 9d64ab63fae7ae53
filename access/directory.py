"""Who may read, as administrators change it: every change journaled before it takes effect.

The user directory (access.users) and the care teams (access.care_teams) decide each request
as they are now; the auditor judges each access by the directory in force at its position in
the log. So every change an administrator makes goes through :class:`Directory`, which
commits a directory change (access.directory_changes) to the access journal - the same
append-only, fsync'd store the access events go to, in the same sequence, copied into the
ledger by the ingestor in that order - and only then applies it to the store. A change is
checked inside the journal's write transaction, so two administrators are serialised and a
change that changes nothing (a member added twice) is not recorded.

Durable first: a crash between the record and the store leaves a record of a change that did
not take effect; the API never decided by it, and the auditor's picture is then the stricter
one for a removal, a wider one only for what nobody was given. A change made to ``access.db``
behind this class's back has no record, and the reads it allowed are findings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from access.care_teams import CareTeam, CareTeamStore
from access.directory_changes import (
    MEMBER_ADDED,
    MEMBER_REMOVED,
    PATIENT_ADDED,
    PATIENT_REMOVED,
    TEAM_CREATED,
    USER_ADDED,
    USER_DISABLED,
    USER_ENABLED,
    Change,
    DirectoryChange,
)
from access.journal import Journal
from access.users import Role, User, UserStore
from ledger.appends import EntryKey
from ledger.entries import EntryKind

Verdict = Callable[[], bool]  # does the change change anything? (raises to refuse it)


class _Unchanged(Exception):
    """Raised inside the journal's transaction to record nothing."""


class Directory:
    """The stores, changed on behalf of ``by`` (an administrator's user id, or ``cli:<user>``).
    Refusals are the stores' own: ``ValueError`` (a bad or taken name), ``KeyError`` (no such
    user or team); :class:`~access.errors.JournalError` when the journal cannot commit (then
    nothing changed)."""

    def __init__(
        self,
        users: UserStore,
        teams: CareTeamStore,
        journal: Journal,
        by: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = users
        self.teams = teams
        self._journal = journal
        self.by = by
        self._clock = clock

    def add_user(
        self, name: str, role: Role, password: str | None, *, patient_id: str | None = None
    ) -> User:
        def check() -> bool:
            self.users.check_new(name, role, password, patient_id=patient_id)
            return True

        check()  # a clear refusal before anything is written
        self._record(USER_ADDED, check, user=name, role=role, patient=patient_id)
        return self.users.add(name, role, password, patient_id=patient_id)

    def set_disabled(self, name: str, disabled: bool = True) -> User:
        """Disable (or enable) an account. Its tokens are refused from the next request (the
        API asks the store at every token check); ending its browser sessions is the caller's
        (dashboards.session_store, a layer above this one)."""

        def check() -> bool:
            user = self.users.get(name)
            if user is None:
                raise KeyError(name)
            return user.disabled != disabled

        self._record(USER_DISABLED if disabled else USER_ENABLED, check, user=name)
        return self.users.set_disabled(name, disabled)

    def create_team(self, name: str) -> CareTeam:
        def check() -> bool:
            if self.teams.get(name) is not None:
                raise ValueError(f"care team {name!r} exists")
            return True

        self._record(TEAM_CREATED, check, team=name)
        return self.teams.create(name)

    def add_member(self, team: str, user: str) -> CareTeam:
        self._record(MEMBER_ADDED, self._changes(team, user, adding=True), team=team, user=user)
        return self.teams.add_member(team, user)

    def remove_member(self, team: str, user: str) -> CareTeam:
        changes = self._changes(team, user, adding=False)
        self._record(MEMBER_REMOVED, changes, team=team, user=user)
        return self.teams.remove_member(team, user)

    def add_patient(self, team: str, patient_id: str) -> CareTeam:
        changes = self._changes(team, patient_id, adding=True, patient=True)
        self._record(PATIENT_ADDED, changes, team=team, patient=patient_id)
        return self.teams.add_patient(team, patient_id)

    def remove_patient(self, team: str, patient_id: str) -> CareTeam:
        changes = self._changes(team, patient_id, adding=False, patient=True)
        self._record(PATIENT_REMOVED, changes, team=team, patient=patient_id)
        return self.teams.remove_patient(team, patient_id)

    def _changes(self, team: str, name: str, *, adding: bool, patient: bool = False) -> Verdict:
        """Whether adding (or removing) a member (or patient) ``name`` changes ``team``;
        ``KeyError`` for a team that does not exist."""

        def verdict() -> bool:
            found = self.teams.get(team)
            if found is None:
                raise KeyError(team)
            return (name in (found.patients if patient else found.members)) != adding

        return verdict

    def _record(self, what: str, changes: Verdict, **fields: str | None) -> bool:
        """Journal the change if ``changes()`` - asked inside the journal's write transaction,
        where it may raise to refuse - says it changes anything; True if it was journaled."""
        now_ms = int(self._clock() * 1000)
        change = Change(now_ms, self.by, what, **fields)
        problem = change.problem()
        if problem is not None:
            raise ValueError(problem)

        def check() -> None:
            if not changes():
                raise _Unchanged

        def build(seq: int) -> tuple[EntryKind, EntryKey, bytes, tuple[str, ...]]:
            record = DirectoryChange(self._journal.journal_id, seq, change)
            return EntryKind.DIRECTORY_CHANGE, record.ledger_key, record.encode(), change.patients

        try:
            self._journal.append(build, now_ms, check)
        except _Unchanged:
            return False
        return True
