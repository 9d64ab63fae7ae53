"""Changes to who may read - users and care teams - as ledger entries (kind 9).

The auditor judges every access against the roles and care teams in force at its position in
the log (access.compliance), so each change an administrator makes to the user directory
(access.users) or the care teams (access.care_teams) is recorded like an access event: one
deterministic CBOR map with text keys, journaled before it takes effect (access.directory)
and copied into the ledger by the ingestor in journal order::

    {"v": 1, "journal": "3f9c0a1b2c3d4e5f", "seq": 17, "time": 1763700000000,
     "by": "cli:ops", "change": "member-removed", "team": "ward-7", "user": "dr.lee"}

``v`` is the format's version (1). ``journal`` and ``seq`` are the access journal's id and the
record's number in it (the ledger key ``("directory/<journal>", seq)``); ``time`` is when the
change was made; ``by`` who made it (an administrator's user id, or ``cli:<OS user>`` for the
command line, which has no signed-in administrator). ``change`` says what, and names exactly
the fields it needs:

    user-added       user, role; patient (only and always for role patient)
    user-disabled    user           user-enabled     user
    team-created     team
    member-added     team, user     member-removed   team, user
    patient-added    team, patient  patient-removed  team, patient
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from access.care_teams import is_team_name
from access.errors import DirectoryChangeError
from access.fields import dump_map, is_code, is_patient_id, is_principal, is_time, is_uint, load_map
from access.users import ROLES, is_user_name
from devices.boundary import decoder
from ledger.appends import EntryKey

VERSION = 1
USER_ADDED, USER_DISABLED, USER_ENABLED = "user-added", "user-disabled", "user-enabled"
TEAM_CREATED = "team-created"
MEMBER_ADDED, MEMBER_REMOVED = "member-added", "member-removed"
PATIENT_ADDED, PATIENT_REMOVED = "patient-added", "patient-removed"
# The fields each change names, besides the common ones.
CHANGES: Mapping[str, frozenset[str]] = {
    USER_ADDED: frozenset({"user", "role"}),  # and "patient" for a patient account
    USER_DISABLED: frozenset({"user"}),
    USER_ENABLED: frozenset({"user"}),
    TEAM_CREATED: frozenset({"team"}),
    MEMBER_ADDED: frozenset({"team", "user"}),
    MEMBER_REMOVED: frozenset({"team", "user"}),
    PATIENT_ADDED: frozenset({"team", "patient"}),
    PATIENT_REMOVED: frozenset({"team", "patient"}),
}

_KEYS = frozenset({"v", "journal", "seq", "time", "by", "change"})
_OPTIONAL = frozenset({"user", "role", "patient", "team"})


def directory_key(journal: str, seq: int) -> EntryKey:
    return EntryKey(f"directory/{journal}", seq)


@dataclass(frozen=True)
class Change:
    """What an administrator changed, who, and when."""

    time_ms: int
    by: str
    change: str  # one of CHANGES
    user: str | None = None
    role: str | None = None
    patient: str | None = None
    team: str | None = None

    @property
    def patients(self) -> tuple[str, ...]:
        """The patients it concerns (the journal indexes records by patient)."""
        return (self.patient,) if self.patient is not None else ()

    def problem(self) -> str | None:
        """Why this is not a valid change, or None."""
        return _invalid(
            {
                "time": self.time_ms,
                "by": self.by,
                "change": self.change,
                **{
                    k: v
                    for k, v in (
                        ("user", self.user),
                        ("role", self.role),
                        ("patient", self.patient),
                        ("team", self.team),
                    )
                    if v is not None
                },
            }
        )


@dataclass(frozen=True)
class DirectoryChange:
    """A change as the journal recorded it: the journal's id and sequence number, and what."""

    journal: str
    seq: int
    change: Change

    @property
    def ledger_key(self) -> EntryKey:
        return directory_key(self.journal, self.seq)

    def encode(self) -> bytes:
        """The deterministic CBOR body; :class:`DirectoryChangeError` if it is not valid."""
        c = self.change
        doc: dict[str, Any] = {
            "v": VERSION,
            "journal": self.journal,
            "seq": self.seq,
            "time": c.time_ms,
            "by": c.by,
            "change": c.change,
            "user": c.user,
            "role": c.role,
            "patient": c.patient,
            "team": c.team,
        }
        reason = _invalid_record(doc) or _invalid({k: v for k, v in doc.items() if v is not None})
        if reason is not None:
            raise DirectoryChangeError(reason)
        return dump_map(doc)

    @classmethod
    @decoder(DirectoryChangeError, "the directory change")
    def decode(cls, data: bytes) -> Self:
        """Parse a body; :class:`DirectoryChangeError` unless it is exactly a valid one."""
        doc = load_map(data, _KEYS, _OPTIONAL)
        if isinstance(doc, str):
            raise DirectoryChangeError(f"a directory change is {doc}")
        reason = _invalid_record(doc) or _invalid(doc)
        if reason is not None:
            raise DirectoryChangeError(reason)
        change = Change(
            doc["time"],
            doc["by"],
            doc["change"],
            doc.get("user"),
            doc.get("role"),
            doc.get("patient"),
            doc.get("team"),
        )
        record = cls(doc["journal"], doc["seq"], change)
        if record.encode() != data:
            raise DirectoryChangeError("directory change is not deterministically encoded")
        return record


def _invalid_record(doc: Mapping[str, Any]) -> str | None:
    """Why the version or the journal's id and number are not valid, or None."""
    if not is_uint(doc["v"]) or doc["v"] != VERSION:
        return f"a directory change is of version {VERSION}"
    if not is_code(doc["journal"]):
        return "a directory change names its journal"
    if not is_uint(doc["seq"]) or doc["seq"] == 0:
        return "a directory change's seq is an integer from 1 to 2**63 - 1"
    return None


def _invalid(doc: Mapping[str, Any]) -> str | None:
    """Why a change (time, by, change and its fields) is not valid, or None."""
    if not is_time(doc["time"]):
        return "a directory change's time is milliseconds since the Unix epoch"
    if not is_principal(doc["by"]):
        return "a directory change names who made it (ASCII without spaces)"
    change = doc["change"]
    if not isinstance(change, str) or change not in CHANGES:
        return f"a directory change is one of {sorted(CHANGES)}"
    wanted = set(CHANGES[change])
    if change == USER_ADDED and doc.get("role") == "patient":
        wanted.add("patient")
    if set(doc) & _OPTIONAL != wanted:
        return f"a {change} names exactly {sorted(wanted)}"
    if "user" in doc and not is_user_name(doc["user"]):
        return "a user name is 1-64 of [a-z0-9._@-], starting [a-z0-9]"
    if "role" in doc and doc["role"] not in ROLES:
        return f"a role is one of {', '.join(ROLES)}"
    if "patient" in doc and not is_patient_id(doc["patient"]):
        return "a patient id is 1-64 of [A-Za-z0-9._-], starting [A-Za-z0-9]"
    if "team" in doc and not is_team_name(doc["team"]):
        return "a care team's name is 1-64 of [A-Za-z0-9 ._-], starting [A-Za-z0-9]"
    return None
