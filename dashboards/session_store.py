"""Browser sessions, kept on the server: the cookie holds a random id, the row says whose it is.

A session is revocable (sign-out deletes its row; a disabled account ends every session of its
user at the next request) and expires twice over: ``ttl_s`` after sign-in however busy it is
(a shift), and ``idle_s`` after its last request (a workstation left signed in). Only a SHA-256
of the cookie's secret is stored, so a copy of the database opens no session; each session
also has a public id (the access trail's token id) and its CSRF token (the synchronizer token
every state-changing request made with the cookie must carry).

The file is ``sessions.db`` in the data directory, beside ``access.db``: sessions are many,
short-lived and written often, users and apps are few and kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from access.errors import Refusals
from access.sqlite import SqliteFile

log = logging.getLogger("vitaltrail.dashboards")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    secret_hash BLOB PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_name, created_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at)
"""
MAX_SECRET_LENGTH = 64  # a secret is 43 characters; anything longer is not one of ours


@dataclass(frozen=True)
class SessionPolicy:
    ttl_s: float = 43_200.0  # from sign-in, however busy
    idle_s: float = 1_800.0  # from the last request
    touch_every_s: float = 60.0  # last_seen is written at most this often (a write is an fsync)
    max_per_user: int = 16  # past this, a new sign-in ends that user's oldest session


@dataclass(frozen=True)
class Session:
    public_id: str  # names the session in the access trail (the token id); not a credential
    user: str
    csrf_token: str
    created_at: float
    expires_at: float  # the absolute end
    last_seen: float

    def csrf_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(
            offered.encode("utf-8", "replace"), self.csrf_token.encode()
        )


@dataclass(frozen=True)
class NewSession:
    secret: str  # the cookie's value: shown once, stored only as a hash
    session: Session


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "replace")).digest()


class SessionStore:
    """Sessions in one SQLite file; every refusal counted in ``refusals`` by reason code."""

    def __init__(
        self,
        path: Path,
        policy: SessionPolicy = SessionPolicy(),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self.policy = policy
        self._clock = clock
        self.refusals = Refusals()

    def create(self, user: str) -> NewSession:
        """A new session for ``user`` (whose password was just checked)."""
        now = self._clock()
        secret = secrets.token_urlsafe(32)
        session = Session(
            public_id="s-" + secrets.token_urlsafe(12),
            user=user,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.policy.ttl_s,
            last_seen=now,
        )
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?",
                (now, now - self.policy.idle_s),
            )
            cur.execute(
                "DELETE FROM sessions WHERE secret_hash IN (SELECT secret_hash FROM sessions"
                " WHERE user_name = ? ORDER BY created_at DESC LIMIT -1 OFFSET ?)",
                (user, self.policy.max_per_user - 1),
            )
            cur.execute(
                "INSERT INTO sessions (secret_hash, public_id, user_name, csrf_token,"
                " created_at, expires_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _digest(secret),
                    session.public_id,
                    user,
                    session.csrf_token,
                    now,
                    session.expires_at,
                    now,
                ),
            )
        log.debug("opened session %s", session.public_id)
        return NewSession(secret, session)

    def get(self, secret: str) -> Session | None:
        """The live session this secret opens, its ``last_seen`` brought up to date; None
        (counted: ``session_unknown``, ``session_expired``, ``session_idle``) otherwise. An
        expired or idle session is deleted when found."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            self.refusals.add("session_unknown")
            return None
        key = _digest(secret)
        rows = self._db.query(
            "SELECT public_id, user_name, csrf_token, created_at, expires_at, last_seen"
            " FROM sessions WHERE secret_hash = ?",
            key,
        )
        if not rows:
            self.refusals.add("session_unknown")
            return None
        public_id, user, csrf, created, expires, seen = rows[0]
        session = Session(public_id, user, csrf, created, expires, seen)
        now = self._clock()
        ended = (
            "session_expired"
            if now >= expires
            else "session_idle"
            if now >= seen + self.policy.idle_s
            else None
        )
        if ended is not None:
            self.refusals.add(ended)
            self._delete(key)
            log.info("session %s ended (%s)", public_id, ended)
            return None
        if now - seen >= self.policy.touch_every_s:
            with self._db.transaction() as cur:
                cur.execute("UPDATE sessions SET last_seen = ? WHERE secret_hash = ?", (now, key))
            session = Session(public_id, user, csrf, created, expires, now)
        return session

    def revoke(self, secret: str) -> bool:
        """End the session this secret opens (sign-out); False if there was none."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return False
        return self._delete(_digest(secret))

    def revoke_user(self, user: str) -> int:
        """End every session of ``user`` (an account disabled or its password changed)."""
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE user_name = ?", (user,))
            ended = cur.rowcount
        if ended:
            log.info("ended %d sessions of a user", ended)
        return ended

    def count(self) -> int:
        """Sessions stored (live or not yet swept)."""
        return int(self._db.query("SELECT COUNT(*) FROM sessions")[0][0])

    def _delete(self, key: bytes) -> bool:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE secret_hash = ?", (key,))
            return cur.rowcount == 1

    def close(self) -> None:
        self._db.close()
