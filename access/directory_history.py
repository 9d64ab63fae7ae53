"""The user directory and the care teams as the log says they were at each position.

The compliance check (access.compliance) replays the directory changes of the ledger (kind 9,
access.directory_changes) in log order, so an access is judged by the role and care teams in
force where it stands in the log - not by the directory of today, where an assignment removed
since would make a legitimate read look like a violation, and an assignment added and removed
around a read would leave no trace. A user the log has no record of has no role here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
)


@dataclass(frozen=True)
class UserRole:
    """What the directory said of a user at a position of the log."""

    role: str
    patient_id: str | None = None  # a patient's own record
    care_team: frozenset[str] = frozenset()  # the patients of every team they were a member of
    disabled: bool = False


@dataclass
class _User:
    role: str
    patient_id: str | None
    disabled: bool = False


@dataclass
class _Team:
    members: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)


class DirectoryHistory:
    """Directory changes applied in log order; :meth:`role_of` answers for the position reached."""

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}
        self._teams: dict[str, _Team] = {}
        self.changes = 0

    def apply(self, change: Change) -> str | None:
        """Apply one change; what is wrong with it, if anything (it is then not applied)."""
        self.changes += 1
        if change.change == USER_ADDED:
            return self._add_user(change)
        if change.change in (USER_DISABLED, USER_ENABLED):
            user = self._users.get(change.user or "")
            if user is None:
                return f"{change.change} names a user the directory does not have"
            user.disabled = change.change == USER_DISABLED
            return None
        if change.change == TEAM_CREATED:
            if change.team in self._teams:
                return "creates a care team that exists"
            self._teams[change.team or ""] = _Team()
            return None
        team = self._teams.get(change.team or "")
        if team is None:
            return f"{change.change} names a care team the directory does not have"
        if change.change == MEMBER_ADDED:
            team.members.add(change.user or "")
        elif change.change == MEMBER_REMOVED:
            team.members.discard(change.user or "")
        elif change.change == PATIENT_ADDED:
            team.patients.add(change.patient or "")
        elif change.change == PATIENT_REMOVED:
            team.patients.discard(change.patient or "")
        return None

    def _add_user(self, change: Change) -> str | None:
        if change.user in self._users:
            return "adds a user the directory has"
        self._users[change.user or ""] = _User(change.role or "", change.patient)
        return None

    def role_of(self, user: str) -> UserRole | None:
        """The user's role, patient and care team at the position reached; None if the log
        has no record of the user."""
        found = self._users.get(user)
        if found is None:
            return None
        team = frozenset(
            patient for t in self._teams.values() if user in t.members for patient in t.patients
        )
        return UserRole(found.role, found.patient_id, team, found.disabled)
