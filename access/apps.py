"""Telemedicine apps registered for SMART Backend Services, and the assertions they have used.

An admin registers an app with its client id, its public JWK set (the value; a JWKS URL is not
taken yet) and the ``system/`` scopes it may be granted. The app then authenticates at the
token endpoint with a ``private_key_jwt`` assertion signed by one of those keys. Each
assertion's ``jti`` is remembered until the assertion expires, in the same database, so a
replay is refused across restarts and across processes sharing the data directory.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from access.errors import ProviderError
from access.jwks import parse_jwk_set
from access.scopes import ScopeSet
from access.sqlite import SqliteFile

log = logging.getLogger("vitaltrail.access")

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The client id in the tokens of people signed in on vitaltrail's own pages: no app may take
# it, and no user name can be it (user names have no ':'), so "sub == client_id" means an app.
WEB_CLIENT_ID = "vitaltrail:web"

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jwks TEXT NOT NULL,
    scopes TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX IF NOT EXISTS seen_assertions_expiry ON seen_assertions (expires_at)
"""


@dataclass(frozen=True)
class App:
    client_id: str
    name: str
    jwks: Mapping[str, Any]
    scopes: ScopeSet  # the most this app may be granted
    disabled: bool = False


class AppStore:
    """Apps in ``<data dir>/access.db``."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._clock = clock

    def register(self, client_id: str, name: str, jwks: Mapping[str, Any], scopes: str) -> App:
        """Register an app: its JWK set must hold a signing key, its scopes be ``system/``."""
        if not CLIENT_ID_RE.match(client_id):
            raise ValueError(f"a client id is {CLIENT_ID_RE.pattern}, found {client_id!r}")
        if client_id == WEB_CLIENT_ID:
            raise ValueError(f"{WEB_CLIENT_ID} is the pages' own client id")
        try:
            keys = parse_jwk_set(jwks)
        except ProviderError as exc:
            raise ValueError(str(exc)) from exc
        if not keys:
            raise ValueError("the JWK set holds no public signing key")
        if None in keys and len(keys) > 1:
            raise ValueError("with more than one key, every key needs a kid")
        allowed = ScopeSet.parse(scopes)
        if not allowed.scopes or allowed.other:
            raise ValueError("an app is allowed SMART resource scopes only (system/...)")
        if any(s.context != "system" for s in allowed.scopes):
            raise ValueError("a backend app acts without a user: its scopes are system/ scopes")
        with self._db.transaction() as cur:
            if cur.execute("SELECT 1 FROM apps WHERE client_id = ?", (client_id,)).fetchone():
                raise ValueError(f"app {client_id!r} exists")
            cur.execute(
                "INSERT INTO apps (client_id, name, jwks, scopes, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (client_id, name, json.dumps(dict(jwks)), str(allowed), self._clock()),
            )
        log.info("registered app %s with %d keys", client_id, len(keys))
        return App(client_id, name, dict(jwks), allowed)

    def get(self, client_id: str) -> App | None:
        rows = self._db.query(
            "SELECT client_id, name, jwks, scopes, disabled FROM apps WHERE client_id = ?",
            client_id,
        )
        return _app(rows[0]) if rows else None

    def list(self) -> list[App]:
        rows = self._db.query(
            "SELECT client_id, name, jwks, scopes, disabled FROM apps ORDER BY client_id"
        )
        return [_app(row) for row in rows]

    def is_disabled(self, client_id: str) -> bool:
        """Whether ``client_id`` is an app that is disabled now (an unknown one is not)."""
        rows = self._db.query("SELECT disabled FROM apps WHERE client_id = ?", client_id)
        return bool(rows and rows[0][0])

    def set_disabled(self, client_id: str, disabled: bool = True) -> App:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE apps SET disabled = ? WHERE client_id = ?", (int(disabled), client_id)
            )
            if cur.rowcount != 1:
                raise KeyError(client_id)
        app = self.get(client_id)
        assert app is not None
        return app

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Remember an assertion's ``jti`` until it expires; False if it was seen already (a
        replay). The table holds unexpired assertions only: the issuer accepts none that lives
        over five minutes, so its size is bounded by five minutes of accepted requests."""
        now = self._clock()
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM seen_assertions WHERE expires_at < ?", (now,))
            cur.execute(
                "INSERT INTO seen_assertions (client_id, jti, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (client_id, jti, expires_at),
            )
            return cur.rowcount == 1

    def close(self) -> None:
        self._db.close()


def _app(row: tuple[Any, ...]) -> App:
    client_id, name, jwks, scopes, disabled = row
    return App(client_id, name, json.loads(jwks), ScopeSet.parse(scopes), bool(disabled))
