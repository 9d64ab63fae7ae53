"""The people who sign in to the embedded issuer: clinicians, patients and administrators.

Passwords are kept as argon2id hashes only. Failed attempts are counted per user: after
``max_failures`` within ``window_s`` the account refuses every attempt, right or wrong, for
``lockout_s`` (the HTTP layer adds its own per-client limit; this one holds however many
clients guess at one name). An unknown name and a wrong password get the same answer and
take the same time (a dummy hash is checked), so sign-in does not tell which names exist; a
disabled account says so only to someone who knows its password.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from access.errors import SignInError
from access.sqlite import SqliteFile

log = logging.getLogger("vitaltrail.access")

Role = Literal["clinician", "patient", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # longer is refused before any hashing: no work for a flood

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    patient_id TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failure_at REAL,
    locked_until REAL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    patient_id: str | None = None  # the patient a patient account is (their own data)
    disabled: bool = False


@dataclass(frozen=True)
class SignInPolicy:
    max_failures: int = 5
    window_s: float = 900.0
    lockout_s: float = 900.0


class UserStore:
    """Users in ``<data dir>/access.db``."""

    def __init__(
        self,
        path: Path,
        *,
        hasher: PasswordHasher | None = None,
        policy: SignInPolicy = SignInPolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._hasher = hasher or PasswordHasher()
        self.policy = policy
        self._clock = clock
        self._dummy_hash = _unmatchable_hash(self._hasher)

    def check_new(
        self, name: str, role: Role, password: str | None, *, patient_id: str | None = None
    ) -> None:
        """Raise ``ValueError`` unless :meth:`add` would make this account now."""
        _check_new(name, role, password, patient_id)
        if self.get(name) is not None:
            raise ValueError(f"user {name!r} exists")

    def add(
        self, name: str, role: Role, password: str | None, *, patient_id: str | None = None
    ) -> User:
        """A new account; a patient account names the patient it is, no other account does.
        With no password, the account is a user of the hospital's OpenID provider (``name`` is
        its ``sub``): registered here for its role and care teams, it cannot sign in here."""
        _check_new(name, role, password, patient_id)
        digest = self._dummy_hash if password is None else self._hasher.hash(password)
        with self._db.transaction() as cur:
            if cur.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"user {name!r} exists")
            cur.execute(
                "INSERT INTO users (name, role, patient_id, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, role, patient_id, digest, self._clock()),
            )
        log.info("added a %s account", role)
        return User(name, role, patient_id)

    def get(self, name: str) -> User | None:
        rows = self._db.query(
            "SELECT name, role, patient_id, disabled FROM users WHERE name = ?", name
        )
        return _user(rows[0]) if rows else None

    def list(self) -> list[User]:
        rows = self._db.query("SELECT name, role, patient_id, disabled FROM users ORDER BY name")
        return [_user(row) for row in rows]

    def is_disabled(self, name: str) -> bool:
        """Whether ``name`` is an account that is disabled now (an unknown name is not)."""
        rows = self._db.query("SELECT disabled FROM users WHERE name = ?", name)
        return bool(rows and rows[0][0])

    def set_disabled(self, name: str, disabled: bool = True) -> User:
        with self._db.transaction() as cur:
            cur.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if cur.rowcount != 1:
                raise KeyError(name)
        user = self.get(name)
        assert user is not None
        return user

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        digest = self._hasher.hash(password)
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE users SET password_hash = ?, failures = 0, locked_until = NULL"
                " WHERE name = ?",
                (digest, name),
            )
            if cur.rowcount != 1:
                raise KeyError(name)

    def authenticate(self, name: str, password: str) -> User:
        """The user whose password this is, or ``SignInError`` (see the module's docstring)."""
        rows = self._db.query(
            "SELECT name, role, patient_id, disabled, password_hash, locked_until"
            " FROM users WHERE name = ?",
            name,
        )
        now = self._clock()
        if len(password) > MAX_PASSWORD_LENGTH:
            raise SignInError("invalid_credentials", "wrong user name or password")
        if not rows:
            self._verify(self._dummy_hash, password)
            raise SignInError("invalid_credentials", "wrong user name or password")
        *fields, digest, locked_until = rows[0]
        user = _user(tuple(fields))
        if locked_until is not None and now < locked_until:
            log.warning("refused a sign-in to a locked account")
            raise SignInError("rate_limited", "too many failed attempts: try again later")
        if not self._verify(digest, password):
            self._count_failure(name, now)
            raise SignInError("invalid_credentials", "wrong user name or password")
        if user.disabled:
            raise SignInError("disabled", "this account is disabled")
        self._succeeded(name, digest, password)
        return user

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    def _count_failure(self, name: str, now: float) -> None:
        policy = self.policy
        with self._db.transaction() as cur:
            row = cur.execute(
                "SELECT failures, first_failure_at FROM users WHERE name = ?", (name,)
            ).fetchone()
            failures, first = row if row else (0, None)
            if first is None or now - first > policy.window_s:
                failures, first = 0, now
            failures += 1
            locked = now + policy.lockout_s if failures >= policy.max_failures else None
            if locked is not None:
                log.warning(
                    "locked an account for %.0f s after %d failures", policy.lockout_s, failures
                )
                failures, first = 0, None
            cur.execute(
                "UPDATE users SET failures = ?, first_failure_at = ?, locked_until = ?"
                " WHERE name = ?",
                (failures, first, locked, name),
            )

    def _succeeded(self, name: str, digest: str, password: str) -> None:
        rehash = self._hasher.check_needs_rehash(digest)
        new_digest = self._hasher.hash(password) if rehash else digest
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE users SET failures = 0, first_failure_at = NULL, locked_until = NULL,"
                " password_hash = ? WHERE name = ?",
                (new_digest, name),
            )

    def close(self) -> None:
        self._db.close()


def _unmatchable_hash(hasher: PasswordHasher) -> str:
    """An argon2 hash in the hasher's parameters of random bytes, which no password matches:
    checking a password against it costs what checking a real one does (so an unknown name
    takes as long as a known one) without spending a hash when the store opens (an API start
    paid ~1 s for it on a loaded two-core machine)."""

    def b64(n: int) -> str:
        return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")

    kind = {Type.ID: "argon2id", Type.I: "argon2i", Type.D: "argon2d"}[hasher.type]
    return (
        f"${kind}$v=19$m={hasher.memory_cost},t={hasher.time_cost},p={hasher.parallelism}"
        f"${b64(hasher.salt_len)}${b64(hasher.hash_len)}"
    )


def is_user_name(value: object) -> bool:
    """A user name, exactly (``fullmatch``: no trailing newline slips through ``$``)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def _check_new(name: str, role: Role, password: str | None, patient_id: str | None) -> None:
    if not is_user_name(name):
        raise ValueError(f"a user name is {NAME_RE.pattern}, found {name!r}")
    if role not in ROLES:
        raise ValueError(f"a role is one of {', '.join(ROLES)}, found {role!r}")
    if (role == "patient") != (patient_id is not None):
        raise ValueError("a patient account, and only a patient account, has a patient id")
    if password is not None:
        _check_password(password)


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


def _user(row: tuple[object, ...]) -> User:
    name, role, patient_id, disabled = row
    return User(str(name), role, patient_id, bool(disabled))  # type: ignore[arg-type]
