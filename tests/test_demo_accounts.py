"""The demo's accounts: made once with generated passwords kept in a 0600 file, then found."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from access.care_teams import CareTeamStore
from access.users import UserStore
from vitaltrail.demo_accounts import assign_demo_ward, ensure_demo_accounts


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest profile: the stores under test are the same, the tests fast."""
    monkeypatch.setattr(
        "access.users.PasswordHasher", lambda: PasswordHasher.from_parameters(CHEAPEST)
    )


def test_accounts_are_made_once_and_their_passwords_kept_in_a_private_file(
    tmp_path: Path,
) -> None:
    first = ensure_demo_accounts(tmp_path / "access.db", tmp_path)
    assert first.created
    assert first.passwords_file.stat().st_mode & 0o777 == 0o600
    written = first.passwords_file.read_text()
    again = ensure_demo_accounts(tmp_path / "access.db", tmp_path)
    assert not again.created
    assert again.passwords_file.read_text() == written  # nothing new, nothing lost
    users = UserStore(tmp_path / "access.db")
    for line in written.splitlines():
        name, role, password = line.split("\t")
        assert users.authenticate(name, password).role == role
    assert [u.name for u in users.list()] == ["demo-admin", "demo-clinician", "demo-patient"]
    users.close()


def test_the_ward_is_assigned_to_the_clinician(tmp_path: Path) -> None:
    teams = CareTeamStore(tmp_path / "access.db")
    try:
        assign_demo_ward(teams, "demo-clinician", ["patient-002", "patient-001"])
        assign_demo_ward(teams, "demo-clinician", ["patient-001", "patient-003"])  # a rerun
        assert teams.patients_of("demo-clinician") == {"patient-001", "patient-002", "patient-003"}
        assert teams.patients_of("someone-else") == frozenset()
    finally:
        teams.close()
