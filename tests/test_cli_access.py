"""The read side's operator commands, run through ``cli.main`` as an operator runs them:
users, apps, a token for scripts, and the access half of ``vitaltrail audit``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from joserfc.jwk import ECKey

from access.apps import AppStore
from access.consent import ConsentStatement, sign_consent
from access.consent_store import ConsentStore
from access.directory_changes import DirectoryChange
from access.errors import SignInError
from access.issuer import Issuer
from access.journal import Journal
from access.tokens import TokenVerifier
from access.trail import AccessTrail
from access.users import UserStore
from dashboards.session_store import SessionStore
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger
from tests.access_helpers import DAY, NOW, PATIENT_KEY, app_read, signed_grant, user_read
from vitaltrail import cli
from vitaltrail.access_commands import cli_actor, open_directory
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's cheapest profile: the stores under test are the same, the tests fast."""
    monkeypatch.setattr(
        "access.users.PasswordHasher", lambda: PasswordHasher.from_parameters(CHEAPEST)
    )


def _run(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_users_add_list_disable(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    pw = ["--password-file", str(password_file)]
    assert _run(capsys, data, "users", "add", "dr.lee", "--role", "clinician", *pw)[0] == 0
    code, out, _ = _run(
        capsys, data, "users", "add", "pat", "--role", "patient", "--patient", "patient-001", *pw
    )
    assert (code, out) == (0, "added patient pat (patient-001)\n")
    code, out, _ = _run(capsys, data, "users", "list")
    assert out.splitlines() == ["dr.lee\tclinician\t-\tactive", "pat\tpatient\tpatient-001\tactive"]
    users = UserStore(data / "access.db")
    assert users.authenticate("dr.lee", PASSWORD).role == "clinician"  # the file's first line
    sessions = SessionStore(data / "sessions.db")
    sessions.create("dr.lee")
    sessions.create("pat")
    assert _run(capsys, data, "users", "disable", "dr.lee")[1] == (
        "disabled dr.lee (its tokens are refused now; 1 session(s) ended)\n"
    )
    assert sessions.count() == 1  # pat's
    assert "dr.lee\tclinician\t-\tdisabled" in _run(capsys, data, "users", "list")[1]
    with pytest.raises(SignInError) as refused:
        users.authenticate("dr.lee", PASSWORD)
    assert refused.value.reason == "disabled"
    assert _run(capsys, data, "users", "enable", "dr.lee")[1] == "enabled dr.lee\n"
    assert users.authenticate("dr.lee", PASSWORD).name == "dr.lee"
    users.close()
    sessions.close()
    # each change is in the access journal, by the command line's user, in order
    journal = Journal(data / "access-journal.sqlite")
    changes = [DirectoryChange.decode(row.body).change for row in journal.after(0)]
    journal.close()
    assert [(c.change, c.user) for c in changes] == [
        ("user-added", "dr.lee"),
        ("user-added", "pat"),
        ("user-disabled", "dr.lee"),
        ("user-enabled", "dr.lee"),
    ]
    assert {c.by for c in changes} == {cli_actor()}
    assert cli_actor().startswith("cli")


def test_users_add_external_registers_a_provider_user_without_a_password(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, sub = tmp_path / "data", "0f8fad5b-d9cb-469f-a165-70867728950e"
    code, out, _ = _run(capsys, data, "users", "add", sub, "--role", "clinician", "--external")
    assert (code, out) == (0, f"added clinician {sub}\n")
    assert _run(capsys, data, "users", "list")[1] == f"{sub}\tclinician\t-\tactive\n"
    users = UserStore(data / "access.db")
    with pytest.raises(SignInError):  # it signs in at the hospital's provider, never here
        users.authenticate(sub, PASSWORD)
    users.close()
    journal = Journal(data / "access-journal.sqlite")
    (change,) = [DirectoryChange.decode(row.body).change for row in journal.after(0)]
    journal.close()
    assert (change.change, change.user, change.role) == ("user-added", sub, "clinician")
    both = ["--external", "--password-file", str(password_file)]
    with pytest.raises(SystemExit):  # a password for a provider's user is a mistake
        cli.main(["users", "add", "x", "--role", "admin", *both, "--data-dir", str(data)])


def test_users_add_asks_for_the_password_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "something else!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    data = tmp_path / "data"
    assert _run(capsys, data, "users", "add", "root", "--role", "admin")[0] == 0
    code, _, err = _run(capsys, data, "users", "add", "other", "--role", "admin")
    assert (code, err) == (2, "error: the two passwords differ\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "dr.lee", "--role", "clinician"], "user 'dr.lee' exists"),
        (["add", "p", "--role", "patient"], "a patient account, and only a patient account"),
        (["add", "c", "--role", "clinician", "--patient", "p-1"], "only a patient account"),
        (["add", "Bad Name", "--role", "admin"], "a user name is"),
        (["disable", "nobody"], "no user 'nobody'"),
        (["enable", "nobody"], "no user 'nobody'"),
    ],
)
def test_users_refuse_nonsense_with_a_reason(
    tmp_path: Path,
    password_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    data = tmp_path / "data"
    pw = ["--password-file", str(password_file)]
    assert _run(capsys, data, "users", "add", "dr.lee", "--role", "clinician", *pw)[0] == 0
    extra = pw if argv[0] == "add" else []
    code, out, err = _run(capsys, data, "users", *argv, *extra)
    assert code == 2
    assert message in err
    assert out == ""
    journal = Journal(data / "access-journal.sqlite")
    assert len(journal.after(0)) == 1  # a refused change is not recorded
    journal.close()


def test_a_short_password_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    code, _, err = _run(
        capsys,
        tmp_path / "d",
        "users",
        "add",
        "x",
        "--role",
        "admin",
        "--password-file",
        str(short),
    )
    assert code == 2
    assert "12 to 1024 characters" in err


def _jwks(tmp_path: Path) -> Path:
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"}, private=True)
    path = tmp_path / "app.jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return path


def test_apps_register_list_disable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, jwks = tmp_path / "data", _jwks(tmp_path)
    code, out, err = _run(
        capsys,
        data,
        "apps",
        "register",
        "telemed-1",
        "--jwks",
        str(jwks),
        "--scope",
        "system/Observation.rs",
        "--scope",
        "system/Patient.r",
        "--name",
        "Telemed One",
    )
    assert code == 0, err
    assert out == "registered telemed-1: system/Observation.rs system/Patient.r\n"
    listed = _run(capsys, data, "apps", "list")[1]
    assert (
        listed
        == "telemed-1\tTelemed One\tsystem/Observation.rs system/Patient.r\t1 key(s)\tactive\n"
    )
    assert _run(capsys, data, "apps", "disable", "telemed-1")[1] == "disabled telemed-1\n"
    apps = AppStore(data / "access.db")
    app = apps.get("telemed-1")
    assert app is not None
    assert app.disabled
    assert app.jwks == json.loads(jwks.read_text())
    apps.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "user/Observation.rs"], "system/ scopes"),
        (["--scope", "system/Observation.zz"], ""),  # the SMART grammar refuses it
        (["--scope", "system/Observation.rs", "--jwks", "{not json"], ""),
    ],
)
def test_apps_register_refuses_nonsense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    jwks = _jwks(tmp_path)
    if "--jwks" in args:
        bad = tmp_path / "bad.json"
        bad.write_text(args[-1])
        args = [*args[:-1], str(bad)]
    else:
        args = [*args, "--jwks", str(jwks)]
    code, out, err = _run(capsys, tmp_path / "d", "apps", "register", "app-1", *args)
    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert out == ""
    assert (
        _run(capsys, tmp_path / "d", "apps", "disable", "nobody")[2] == "error: no app 'nobody'\n"
    )


def test_token_prints_a_bearer_token_the_api_accepts_and_logs_none(
    tmp_path: Path,
    password_file: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data"
    pw = ["--password-file", str(password_file)]
    _run(capsys, data, "users", "add", "pat", "--role", "patient", "--patient", "patient-001", *pw)
    caplog.set_level(logging.DEBUG)
    code, out, err = _run(capsys, data, "token", "--user", "pat", "--log-level", "DEBUG")
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n", "the token alone on stdout, for $(vitaltrail token ...)"
    assert token not in caplog.text
    assert token not in err
    config = issuer_config(Settings(data_dir=data))
    issuer = Issuer.open(data, config)
    verifier = TokenVerifier(config.audience, [issuer.trusted_issuer()])
    principal = verifier.verify(token)
    assert (principal.subject, principal.roles, principal.patient) == (
        "pat",
        frozenset({"patient"}),
        "patient-001",
    )
    assert "patient/Consent.cruds" in str(principal.scopes)
    code, out, _ = _run(capsys, data, "token", "--user", "pat", "--scope", "patient/Observation.rs")
    assert code == 0
    assert str(verifier.verify(out.strip()).scopes) == "patient/Observation.rs"
    issuer.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "nobody"], "no user 'nobody'"),
        (["--user", "pat", "--scope", "user/Observation.rs"], "none of the scopes"),
        (["--user", "gone"], "is disabled"),
    ],
)
def test_token_refuses_with_a_reason(
    tmp_path: Path,
    password_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    data = tmp_path / "data"
    pw = ["--password-file", str(password_file)]
    _run(capsys, data, "users", "add", "pat", "--role", "patient", "--patient", "p-1", *pw)
    _run(capsys, data, "users", "add", "gone", "--role", "clinician", *pw)
    _run(capsys, data, "users", "disable", "gone")
    code, out, err = _run(capsys, data, "token", *argv)
    assert (code, out) == (2, "")
    assert message in err


def _ledger_with_three_reads(data: Path) -> dict[str, int]:
    """A permitted app read, an app read after the withdrawal, a break-glass read; sealed."""
    settings = Settings(data_dir=data)
    with open_directory(settings, "u-admin") as directory:
        directory.add_user("u-nurse-3", "clinician", PASSWORD)
    journal = Journal(settings.access_journal_path)
    consents = ConsentStore(journal)
    trail = AccessTrail(journal, consents)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    allowed = trail.record(app_read())
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    consents.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    leaked = trail.record(app_read(consents=[]))  # a server that served anyway
    glass = trail.record(
        user_read(
            "u-nurse-3", "clinician", ("p-18",), reason="break-glass", break_glass="collapsed"
        )
    )
    ledger = Ledger(
        settings.ledger_path, load_or_create_signer(settings.ledger_key_path, settings.origin)
    )
    pending = journal.pending(0, NOW)
    ledger.append(pending.entries, meta=pending.meta)
    ledger.seal(NOW)
    where = {
        name: ledger.log.index_of(event.ledger_key) or -1
        for name, event in (("allowed", allowed), ("leaked", leaked), ("glass", glass))
    }
    ledger.close()
    journal.close()
    return where


def test_audit_checks_every_access_and_lists_break_glass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    where = _ledger_with_three_reads(data)
    code, out, err = _run(capsys, data, "audit")
    assert code == 1, err
    lines = out.splitlines()
    assert "OK: every entry, tile, ledger key" in out  # the ledger itself is sound
    assert any(
        line.startswith("access: 2 consent statements, 3 accesses (3 permitted, 0 refused)")
        for line in lines
    )
    findings = [line for line in lines if line.startswith("ACCESS FINDING")]
    assert findings == [
        f"ACCESS FINDING: entry {where['leaked']} (consent): app:telemed-1 read vital-signs of"
        " p-17 for TREAT without a consent in force"
    ]
    glass = [line for line in lines if line.startswith("break-glass:")]
    assert glass == [
        f"break-glass: entry {where['glass']} at 2025-11-21T04:40:00Z: u-nurse-3 (clinician)"
        " read p-18: 'collapsed'"
    ]
    assert f"entry {where['allowed']}" not in "\n".join(findings)


def test_care_teams_changed_on_the_command_line_are_what_the_audit_judges_by(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read while the nurse was in the ward passes; her read after she was taken off it is
    a finding, though the directory of today says the same of both."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    pw = ["--password-file", str(password_file)]
    assert _run(capsys, data, "users", "add", "u-nurse-3", "--role", "clinician", *pw)[0] == 0
    for argv in (["create", "ward 7"], ["add-member", "ward 7", "u-nurse-3"]):
        assert _run(capsys, data, "teams", *argv)[0] == 0
    code, out, _ = _run(capsys, data, "teams", "add-patient", "ward 7", "p-17")
    assert (code, out) == (0, "ward 7\tmembers: u-nurse-3\tpatients: p-17\n")
    journal = Journal(settings.access_journal_path)
    trail = AccessTrail(journal)
    trail.record(user_read("u-nurse-3", "clinician", ("p-17",)))
    assert _run(capsys, data, "teams", "remove-member", "ward 7", "u-nurse-3")[0] == 0
    late = trail.record(user_read("u-nurse-3", "clinician", ("p-17",)))
    ledger = Ledger(
        settings.ledger_path, load_or_create_signer(settings.ledger_key_path, settings.origin)
    )
    pending = journal.pending(0, NOW)
    ledger.append(pending.entries, meta=pending.meta)
    ledger.seal(NOW)
    late_at = ledger.log.index_of(late.ledger_key)
    ledger.close()
    journal.close()
    code, out, _ = _run(capsys, data, "audit")
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("ACCESS FINDING")] == [
        f"ACCESS FINDING: entry {late_at} (role): a clinician read patients outside the care team"
    ]
    assert (
        "directory: 5 changes in the log; member-added 1; member-removed 1; patient-added 1;"
        " team-created 1; user-added 1"
    ) in out
    assert _run(capsys, data, "teams", "list")[1] == "ward 7\tmembers: -\tpatients: p-17\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "ward 7"], "care team 'ward 7' exists"),
        (["create", "ward/7"], "a care team's name is"),
        (["add-member", "ward 9", "u-1"], "no care team 'ward 9'"),
        (["add-member", "ward 7", "Bad Name"], "a user name is"),
        (["add-patient", "ward 7", "p 1"], "a patient id is"),
        (["remove-patient", "ward 9", "p-1"], "no care team 'ward 9'"),
    ],
)
def test_teams_refuse_nonsense_with_a_reason_and_record_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    data = tmp_path / "data"
    assert _run(capsys, data, "teams", "create", "ward 7")[0] == 0
    code, out, err = _run(capsys, data, "teams", *argv)
    assert (code, out) == (2, "")
    assert message in err
    journal = Journal(data / "access-journal.sqlite")
    assert len(journal.after(0)) == 1
    journal.close()


def test_a_change_that_changes_nothing_is_not_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for _ in range(2):
        assert _run(capsys, data, "teams", "create", "w")[0] in (0, 2)
        assert _run(capsys, data, "teams", "add-patient", "w", "p-1")[0] == 0
    assert _run(capsys, data, "teams", "remove-member", "w", "nobody")[0] == 0
    journal = Journal(data / "access-journal.sqlite")
    changes = [DirectoryChange.decode(row.body).change.change for row in journal.after(0)]
    journal.close()
    assert changes == ["team-created", "patient-added"]
