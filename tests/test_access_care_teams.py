"""Care teams: an admin's assignment of clinicians to patients, and whom a clinician may read."""

from __future__ import annotations

from pathlib import Path

import pytest

from access.care_teams import CareTeamStore


def test_a_clinician_reads_the_patients_of_each_of_their_teams(tmp_path: Path) -> None:
    teams = CareTeamStore(tmp_path / "access.db")
    teams.create("ward 3")
    teams.create("cardiology")
    teams.add_member("ward 3", "dr-ada")
    teams.add_member("cardiology", "dr-ada")
    teams.add_member("cardiology", "dr-bob")
    teams.add_patient("ward 3", "p-1")
    teams.add_patient("cardiology", "p-2")
    assert teams.patients_of("dr-ada") == {"p-1", "p-2"}
    assert teams.patients_of("dr-bob") == {"p-2"}
    assert teams.patients_of("nobody") == frozenset()
    assert teams.teams_of("dr-ada") == ["cardiology", "ward 3"]
    teams.remove_member("cardiology", "dr-ada")
    teams.remove_patient("ward 3", "p-1")
    assert teams.patients_of("dr-ada") == frozenset()  # the next question sees the change
    team = teams.get("cardiology")
    assert team is not None
    assert team.members == {"dr-bob"}
    assert team.patients == {"p-2"}
    assert [t.name for t in teams.all()] == ["cardiology", "ward 3"]
    teams.close()
    reopened = CareTeamStore(tmp_path / "access.db")
    assert reopened.patients_of("dr-bob") == {"p-2"}  # kept in the access database
    reopened.close()


def test_bad_names_and_unknown_teams_are_refused(tmp_path: Path) -> None:
    teams = CareTeamStore(tmp_path / "access.db")
    teams.create("icu")
    with pytest.raises(ValueError, match="exists"):
        teams.create("icu")
    with pytest.raises(ValueError, match="name"):
        teams.create("")
    with pytest.raises(ValueError, match="user name"):
        teams.add_member("icu", "Dr Ada")
    with pytest.raises(ValueError, match="patient id"):
        teams.add_patient("icu", "../p")
    with pytest.raises(KeyError):
        teams.add_patient("no such team", "p-1")
    assert teams.get("no such team") is None
    teams.close()
