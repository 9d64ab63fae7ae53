"""The demo's people: a clinician for the demo ward, a patient (patient-001) and an admin.

Made at the demo's first run with generated passwords, which go to one file in the data
directory readable by its owner only (mode 0600) and nowhere else: not the terminal, not the
log. A later run finds the accounts and the file and makes nothing new. Accounts and the ward
are made through the directory (access.directory), so they are in the log like any change an
administrator makes, and the demo's ledger audits clean.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from access.directory import Directory
from access.users import Role
from ledger.keyfile import write_private

log = logging.getLogger("vitaltrail.demo")

PASSWORDS_FILE = "demo-accounts.txt"
CLINICIAN, PATIENT, ADMIN = "demo-clinician", "demo-patient", "demo-admin"
DEMO_PATIENT = "patient-001"  # the first patient of the demo's ward


@dataclass(frozen=True)
class DemoAccounts:
    clinician: str
    patient: str
    admin: str
    patient_id: str
    passwords_file: Path
    created: bool  # made by this run (False: found from an earlier one)


DEMO_TEAM = "demo-ward"
DEMO_ACTOR = "vitaltrail:demo"  # who the demo's directory changes are by


def ensure_demo_accounts(directory: Directory, data_dir: Path) -> DemoAccounts:
    """The demo accounts, made with fresh passwords if any of them is missing."""
    path = data_dir / PASSWORDS_FILE
    wanted: list[tuple[str, Role, str | None]] = [
        (CLINICIAN, "clinician", None),
        (PATIENT, "patient", DEMO_PATIENT),
        (ADMIN, "admin", None),
    ]
    created = False
    missing = [w for w in wanted if directory.users.get(w[0]) is None]
    if missing:
        lines = []
        for name, role, patient_id in missing:
            password = secrets.token_urlsafe(15)  # 120 bits, 20 characters
            directory.add_user(name, role, password, patient_id=patient_id)
            lines.append(f"{name}\t{role}\t{password}\n")
        previous = path.read_text() if path.exists() else ""
        write_private(path, (previous + "".join(lines)).encode())
        created = True
        log.info("created %d demo accounts; their passwords are in %s", len(missing), path)
    return DemoAccounts(CLINICIAN, PATIENT, ADMIN, DEMO_PATIENT, path, created)


def assign_demo_ward(directory: Directory, clinician: str, patients: Iterable[str]) -> None:
    """Put the demo ward's patients in the demo clinician's care team (idempotent)."""
    team = directory.teams.get(DEMO_TEAM) or directory.create_team(DEMO_TEAM)
    if clinician not in team.members:
        directory.add_member(DEMO_TEAM, clinician)
    for patient in sorted(set(patients) - team.patients):
        directory.add_patient(DEMO_TEAM, patient)
