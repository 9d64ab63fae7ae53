"""The read side's operator commands: users, care teams, apps, a token for scripts, and the
compliance half of `vitaltrail audit` (every recorded access against the roles, care teams and
consents in force at its position in the log).

The users, care teams and apps live in ``settings.access_db_path``; the embedded issuer's key
in the data directory (access.issuer). Every change to users and care teams goes through
:class:`access.directory.Directory`, journaled (so copied into the ledger) before it takes
effect, made ``by`` ``cli:<OS user>``: the command line has no signed-in administrator.
Nothing here logs a password or a token: a password comes from a prompt or a file, a token
goes to stdout only.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from access.apps import AppStore
from access.care_teams import CareTeam, CareTeamStore
from access.compliance import ComplianceReport, check_compliance
from access.directory import Directory
from access.errors import AccessRecordError
from access.fields import is_principal
from access.issuer import Issuer
from access.journal import Journal
from access.users import Role, UserStore
from dashboards.session_store import SessionStore
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return cast(Path, args.password_file).read_text().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.user}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cli_actor() -> str:
    """Who a change made on the command line is by: ``cli:<OS user>``, else ``cli``."""
    try:
        by = f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no password-database entry
        return "cli"
    return by if is_principal(by) else "cli"


@contextmanager
def open_directory(settings: Settings, by: str) -> Iterator[Directory]:
    """The users and care teams of the data directory, changed on behalf of ``by``, each change
    journaled in the access journal the ingestor copies into the ledger."""
    users = UserStore(settings.access_db_path)
    teams = CareTeamStore(settings.access_db_path)
    try:
        journal = Journal(settings.access_journal_path)
    except BaseException:
        users.close()
        teams.close()
        raise
    try:
        yield Directory(users, teams, journal, by)
    finally:
        journal.close()
        teams.close()
        users.close()


def end_sessions(settings: Settings, user: str) -> int:
    """End every browser session of ``user`` (an account just disabled), if there are any."""
    if not settings.sessions_path.exists():
        return 0
    sessions = SessionStore(settings.sessions_path)
    try:
        return sessions.revoke_user(user)
    finally:
        sessions.close()


def run_users(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            users = UserStore(settings.access_db_path)
            try:
                for user in users.list():
                    state = "disabled" if user.disabled else "active"
                    print(f"{user.name}\t{user.role}\t{user.patient_id or '-'}\t{state}")
            finally:
                users.close()
            return 0
        with open_directory(settings, cli_actor()) as directory:
            if args.action == "add":
                role = cast(Role, args.role)
                password = None if args.external else _password(args)
                user = directory.add_user(args.user, role, password, patient_id=args.patient)
                print(
                    f"added {user.role} {user.name}"
                    + (f" ({user.patient_id})" * bool(user.patient_id))
                )
            elif args.action == "disable":
                user = directory.set_disabled(args.user)
                ended = end_sessions(settings, user.name)
                print(
                    f"disabled {user.name} (its tokens are refused now; {ended} session(s) ended)"
                )
            else:
                user = directory.set_disabled(args.user, False)
                print(f"enabled {user.name}")
    except KeyError as exc:
        return _error(f"no user {exc.args[0]!r}")
    except (ValueError, OSError, AccessRecordError) as exc:
        return _error(str(exc))
    return 0


def _team_line(team: CareTeam) -> str:
    members = ", ".join(sorted(team.members)) or "-"
    patients = ", ".join(sorted(team.patients)) or "-"
    return f"{team.name}\tmembers: {members}\tpatients: {patients}"


def run_teams(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            teams = CareTeamStore(settings.access_db_path)
            try:
                for found in teams.all():
                    print(_team_line(found))
            finally:
                teams.close()
            return 0
        with open_directory(settings, cli_actor()) as directory:
            team, name = cast(str, args.team), cast(str, getattr(args, "who", ""))
            changes: dict[str, Callable[[], CareTeam]] = {
                "create": lambda: directory.create_team(team),
                "add-member": lambda: directory.add_member(team, name),
                "remove-member": lambda: directory.remove_member(team, name),
                "add-patient": lambda: directory.add_patient(team, name),
                "remove-patient": lambda: directory.remove_patient(team, name),
            }
            change = changes[args.action]
            print(_team_line(change()))
    except KeyError as exc:
        return _error(f"no care team {exc.args[0]!r}")
    except (ValueError, OSError, AccessRecordError) as exc:
        return _error(str(exc))
    return 0


def run_apps(settings: Settings, args: argparse.Namespace) -> int:
    apps = AppStore(settings.access_db_path)
    try:
        if args.action == "register":
            jwks = json.loads(cast(Path, args.jwks).read_text())
            if not isinstance(jwks, dict):
                raise ValueError("the JWK set is a JSON object with a 'keys' list")
            app = apps.register(
                args.client_id, args.app_name or args.client_id, jwks, " ".join(args.scope)
            )
            print(f"registered {app.client_id}: {app.scopes}")
        elif args.action == "disable":
            app = apps.set_disabled(args.client_id)
            print(f"disabled {app.client_id}")
        else:
            for app in apps.list():
                state = "disabled" if app.disabled else "active"
                keys = len(app.jwks.get("keys", []))
                print(f"{app.client_id}\t{app.name}\t{app.scopes}\t{keys} key(s)\t{state}")
    except KeyError as exc:
        return _error(f"no app {exc.args[0]!r}")
    except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        return _error(str(exc))
    finally:
        apps.close()
    return 0


def run_token(settings: Settings, args: argparse.Namespace) -> int:
    """Print a bearer token for a user, alone on stdout (``$(vitaltrail token --user ...)``)."""
    issuer = Issuer.open(settings.data_dir, issuer_config(settings))
    try:
        user = issuer.users.get(args.user)
        if user is None:
            return _error(f"no user {args.user!r}")
        scope = " ".join(args.scope) if args.scope else None
        issued = issuer.token_for(user, scope)
    except ValueError as exc:
        return _error(str(exc))
    finally:
        issuer.close()
    print(issued.access_token)
    print(f"expires in {issued.expires_in} s; scope: {issued.scope}", file=sys.stderr)
    return 0


def _when(time_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def print_compliance(entries: Iterable[tuple[int, bytes]]) -> ComplianceReport:
    """Check every recorded access, print what was found, and return the report."""
    report = check_compliance(entries)
    changes = report.directory_changes
    print(
        f"access: {report.consents:,} consent statements, {report.accesses:,} accesses"
        f" ({report.permits:,} permitted, {report.refusals:,} refused) checked against the"
        " consents, roles and care teams in force at each"
    )
    print(
        f"directory: {changes.total():,} changes in the log"
        + "".join(f"; {what} {n:,}" for what, n in sorted(changes.items()))
    )
    for glass in report.break_glass:
        a = glass.event.access
        print(
            f"break-glass: entry {glass.index} at {_when(a.time_ms)}: {a.agent.id} ({a.agent.role})"
            f" read {', '.join(a.patients)}: {a.break_glass!r}"
        )
    for finding in report.findings:
        print(f"ACCESS FINDING: {finding.where} ({finding.check}): {finding.detail}")
    if report.ok:
        print("OK: every recorded access was allowed when it happened")
    return report
