"""The demo's accounts: made once with generated passwords kept in a 0600 file, then found;
made, like the ward, through the directory, so each is in the access journal (and the log)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from access.directory import Directory
from access.directory_changes import DirectoryChange
from access.journal import Journal
from access.users import UserStore
from vitaltrail.access_commands import open_directory
from vitaltrail.demo_accounts import DEMO_ACTOR, assign_demo_ward, ensure_demo_accounts
from vitaltrail.settings import Settings


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest profile: the stores under test are the same, the tests fast."""
    monkeypatch.setattr(
        "access.users.PasswordHasher", lambda: PasswordHasher.from_parameters(CHEAPEST)
    )


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    with open_directory(Settings(data_dir=tmp_path), DEMO_ACTOR) as opened:
        yield opened


def _journaled(tmp_path: Path) -> list[tuple[str, str | None, str | None]]:
    journal = Journal(Settings(data_dir=tmp_path).access_journal_path)
    changes = [DirectoryChange.decode(row.body).change for row in journal.after(0)]
    journal.close()
    assert {c.by for c in changes} <= {DEMO_ACTOR}
    return [(c.change, c.user or c.team, c.patient) for c in changes]


def test_accounts_are_made_once_and_their_passwords_kept_in_a_private_file(
    tmp_path: Path, directory: Directory
) -> None:
    first = ensure_demo_accounts(directory, tmp_path)
    assert first.created
    assert first.passwords_file.stat().st_mode & 0o777 == 0o600
    written = first.passwords_file.read_text()
    again = ensure_demo_accounts(directory, tmp_path)
    assert not again.created
    assert again.passwords_file.read_text() == written  # nothing new, nothing lost
    users = UserStore(tmp_path / "access.db")
    for line in written.splitlines():
        name, role, password = line.split("\t")
        assert users.authenticate(name, password).role == role
    assert [u.name for u in users.list()] == ["demo-admin", "demo-clinician", "demo-patient"]
    users.close()
    assert _journaled(tmp_path) == [
        ("user-added", "demo-clinician", None),
        ("user-added", "demo-patient", "patient-001"),
        ("user-added", "demo-admin", None),
    ]


def test_the_ward_is_assigned_to_the_clinician(tmp_path: Path, directory: Directory) -> None:
    assign_demo_ward(directory, "demo-clinician", ["patient-002", "patient-001"])
    assign_demo_ward(directory, "demo-clinician", ["patient-001", "patient-003"])  # a rerun
    teams = directory.teams
    assert teams.patients_of("demo-clinician") == {"patient-001", "patient-002", "patient-003"}
    assert teams.patients_of("someone-else") == frozenset()
    assert _journaled(tmp_path) == [
        ("team-created", "demo-ward", None),
        ("member-added", "demo-clinician", None),
        ("patient-added", "demo-ward", "patient-001"),
        ("patient-added", "demo-ward", "patient-002"),
        ("patient-added", "demo-ward", "patient-003"),
    ]
