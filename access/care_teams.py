"""Care teams: which clinicians look after which patients, as an administrator assigns them.

A clinician reads the patients of every care team (or ward) they are a member of, and nobody
else's without breaking the glass (access.policy). Teams live in the access database beside
the users and apps (``settings.access_db_path``); a member is named by user name, a patient by
the patient id the device registry uses. Changing a team takes effect for the next request:
the API asks :meth:`CareTeamStore.patients_of` at each decision, and nothing is cached.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from access.fields import is_patient_id
from access.sqlite import SqliteFile
from access.users import NAME_RE, is_user_name

log = logging.getLogger("vitaltrail.access")

TEAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS care_teams (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS care_team_members (
    team TEXT NOT NULL REFERENCES care_teams (name),
    member TEXT NOT NULL,
    PRIMARY KEY (team, member)
);
CREATE INDEX IF NOT EXISTS care_team_members_by_member ON care_team_members (member);
CREATE TABLE IF NOT EXISTS care_team_patients (
    team TEXT NOT NULL REFERENCES care_teams (name),
    patient TEXT NOT NULL,
    PRIMARY KEY (team, patient)
)
"""


def is_team_name(value: object) -> bool:
    return isinstance(value, str) and TEAM_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class CareTeam:
    name: str
    members: frozenset[str]  # clinicians' user names
    patients: frozenset[str]


class CareTeamStore:
    """Care teams in ``<data dir>/access.db``."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._clock = clock

    def create(self, name: str) -> CareTeam:
        if not is_team_name(name):
            raise ValueError(f"a care team's name is {TEAM_RE.pattern}, found {name!r}")
        with self._db.transaction() as cur:
            if cur.execute("SELECT 1 FROM care_teams WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"care team {name!r} exists")
            cur.execute("INSERT INTO care_teams VALUES (?, ?)", (name, self._clock()))
        log.info("created a care team")
        return CareTeam(name, frozenset(), frozenset())

    def add_member(self, team: str, user: str) -> CareTeam:
        """Add a clinician (by user name) to a team."""
        if not is_user_name(user):
            raise ValueError(f"a user name is {NAME_RE.pattern}, found {user!r}")
        return self._change(team, "INSERT OR IGNORE INTO care_team_members VALUES (?, ?)", user)

    def remove_member(self, team: str, user: str) -> CareTeam:
        return self._change(
            team, "DELETE FROM care_team_members WHERE team = ? AND member = ?", user
        )

    def add_patient(self, team: str, patient_id: str) -> CareTeam:
        if not is_patient_id(patient_id):
            raise ValueError(f"invalid patient id {patient_id!r}")
        return self._change(
            team, "INSERT OR IGNORE INTO care_team_patients VALUES (?, ?)", patient_id
        )

    def remove_patient(self, team: str, patient_id: str) -> CareTeam:
        return self._change(
            team, "DELETE FROM care_team_patients WHERE team = ? AND patient = ?", patient_id
        )

    def _change(self, team: str, sql: str, value: str) -> CareTeam:
        with self._db.transaction() as cur:
            if not cur.execute("SELECT 1 FROM care_teams WHERE name = ?", (team,)).fetchone():
                raise KeyError(team)
            cur.execute(sql, (team, value))
        found = self.get(team)
        assert found is not None
        return found

    def get(self, name: str) -> CareTeam | None:
        if not self._db.query("SELECT 1 FROM care_teams WHERE name = ?", name):
            return None
        members = self._db.query("SELECT member FROM care_team_members WHERE team = ?", name)
        patients = self._db.query("SELECT patient FROM care_team_patients WHERE team = ?", name)
        return CareTeam(name, frozenset(m for (m,) in members), frozenset(p for (p,) in patients))

    def all(self) -> list[CareTeam]:
        names = self._db.query("SELECT name FROM care_teams ORDER BY name")
        return [team for (name,) in names if (team := self.get(name)) is not None]

    def teams_of(self, user: str) -> list[str]:
        rows = self._db.query(
            "SELECT team FROM care_team_members WHERE member = ? ORDER BY team", user
        )
        return [team for (team,) in rows]

    def patients_of(self, clinician: str) -> frozenset[str]:
        """The patients of every team ``clinician`` is a member of: those they may read."""
        rows = self._db.query(
            "SELECT DISTINCT p.patient FROM care_team_members m"
            " JOIN care_team_patients p ON p.team = m.team WHERE m.member = ?",
            clinician,
        )
        return frozenset(patient for (patient,) in rows)

    def close(self) -> None:
        self._db.close()
