"""The read side's operator commands: users, apps, a token for scripts, and the compliance
half of `vitaltrail audit` (every recorded access against the roles and consents in force).

The users and apps live in ``settings.access_db_path``; the embedded issuer's key in the data
directory (access.issuer). Nothing here logs a password or a token: a password comes from a
prompt or a file, a token goes to stdout only.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

from access.apps import AppStore
from access.compliance import ComplianceReport, RoleLookup, UserRole, check_compliance
from access.issuer import Issuer
from access.users import Role, UserStore
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config

# The patients a clinician's care team or ward holds at a time (user id, time ms); None when
# unknown (the compliance check then does not judge that clinician's reads by care team).
CareTeamLookup = Callable[[str, int], frozenset[str] | None]


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


def run_users(settings: Settings, args: argparse.Namespace) -> int:
    users = UserStore(settings.access_db_path)
    try:
        if args.action == "add":
            user = users.add(
                args.user, cast(Role, args.role), _password(args), patient_id=args.patient
            )
            print(
                f"added {user.role} {user.name}" + (f" ({user.patient_id})" * bool(user.patient_id))
            )
        elif args.action == "disable":
            user = users.set_disabled(args.user)
            print(f"disabled {user.name}")
        else:
            for user in users.list():
                state = "disabled" if user.disabled else "active"
                print(f"{user.name}\t{user.role}\t{user.patient_id or '-'}\t{state}")
    except KeyError as exc:
        return _error(f"no user {exc.args[0]!r}")
    except (ValueError, OSError) as exc:
        return _error(str(exc))
    finally:
        users.close()
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


def current_roles(
    path: Path, care_teams: CareTeamLookup | None
) -> tuple[RoleLookup, Callable[[], None]]:
    """A role lookup from the user directory, and how to close it. The directory keeps no
    history: a user's role "at" a time is their role now (the ledger does not record role
    changes yet), and a user deleted since is unknown. A clinician's care team comes from
    ``care_teams``."""
    if not path.exists():
        return (lambda user, at_ms: None), (lambda: None)
    users = UserStore(path)

    def lookup(name: str, at_ms: int) -> UserRole | None:
        user = users.get(name)
        if user is None:
            return None
        team = care_teams(name, at_ms) if care_teams and user.role == "clinician" else None
        return UserRole(user.role, user.patient_id, team)

    return lookup, users.close


def _when(time_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def print_compliance(
    entries: Iterable[tuple[int, bytes]], settings: Settings, care_teams: CareTeamLookup | None
) -> ComplianceReport:
    """Check every recorded access, print what was found, and return the report."""
    roles, close = current_roles(settings.access_db_path, care_teams)
    try:
        report = check_compliance(entries, roles)
    finally:
        close()
    print(
        f"access: {report.consents:,} consent statements, {report.accesses:,} accesses"
        f" ({report.permits:,} permitted, {report.refusals:,} refused) checked against the"
        " consents in force and the users' current roles"
        + ("" if care_teams else " (care teams not checked: no care-team lookup)")
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
