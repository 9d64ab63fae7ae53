"""Subscriptions, their events and the delivery cursor, durable in the data directory.

One SQLite file (``Settings.fhir_subscriptions_path``) holds:

``subscriptions``  each one's owner (the principal that created it: the access policy decides
                   every delivery for that principal), its spec, status, the count of events
                   since it started, and how far its rest-hook has delivered;
``events``         each subscription's events (one per new Observation of its patient), the
                   last ``keep`` of them: what a notification carries, what ``$events`` and a
                   reconnecting client read. Deliveries read from here - the queue of a slow
                   endpoint or websocket is this bounded table, never memory;
``cursor``         the ledger position the engine has matched up to, so a restart neither
                   misses nor repeats an event.

Every change is one transaction (``access.sqlite.SqliteFile``: a lock, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

from access.scopes import ScopeSet
from access.sqlite import SqliteFile
from access.tokens import Principal
from fhirserver.subscription_topics import TOPICS
from fhirserver.subscriptions import Status, SubscriptionError, SubscriptionSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    principal TEXT NOT NULL,
    spec TEXT NOT NULL,
    topic TEXT NOT NULL,
    patient TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_ms INTEGER NOT NULL,
    start_position INTEGER NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS subscriptions_by_owner ON subscriptions (owner);
CREATE TABLE IF NOT EXISTS events (
    subscription TEXT NOT NULL,
    number INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    entry_index INTEGER NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (subscription, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursor (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
)
"""
LIVE: tuple[Status, ...] = ("requested", "active")
_COLUMNS = "id, principal, spec, status, error, created_ms, start_position, events, delivered"


def owner_key(principal: Principal) -> str:
    """Who a subscription belongs to: the same person or app through the same client, as the
    same issuer says (a digest: the issuer, subject and client id are joined unambiguously)."""
    joined = "\0".join((principal.issuer, principal.subject, principal.client_id))
    return hashlib.sha256(joined.encode("utf-8", "replace")).hexdigest()


def principal_json(principal: Principal) -> str:
    """What the access policy needs of a principal, to decide again at every delivery."""
    claims = {k: v for k, v in principal.claims.items() if k == "purpose_of_use"}
    return json.dumps(
        {
            "subject": principal.subject,
            "client_id": principal.client_id,
            "kind": principal.kind,
            "roles": sorted(principal.roles),
            "scopes": str(principal.scopes),
            "token_id": principal.token_id,
            "issuer": principal.issuer,
            "expires_at": principal.expires_at,
            "patient": principal.patient,
            "claims": claims,
        },
        sort_keys=True,
    )


def principal_from_json(text: str) -> Principal:
    doc = json.loads(text)
    return Principal(
        subject=doc["subject"],
        client_id=doc["client_id"],
        kind=doc["kind"],
        roles=frozenset(doc["roles"]),
        scopes=ScopeSet.parse(doc["scopes"]),
        token_id=doc["token_id"],
        issuer=doc["issuer"],
        expires_at=doc["expires_at"],
        patient=doc["patient"],
        claims=doc["claims"],
    )


def _spec_json(spec: SubscriptionSpec) -> str:
    doc = asdict(spec)
    doc["topic"] = spec.topic.name
    doc["headers"] = list(spec.headers)
    return json.dumps(doc, sort_keys=True)


def _spec_from_json(text: str) -> SubscriptionSpec:
    doc = json.loads(text)
    topic = next(t for t in TOPICS if t.name == doc["topic"])
    return SubscriptionSpec(**{**doc, "topic": topic, "headers": tuple(doc["headers"])})


@dataclass(frozen=True)
class StoredSubscription:
    id: str
    owner: Principal
    spec: SubscriptionSpec
    status: Status
    error: str | None
    created_ms: int
    start_position: int  # events are the Observations of entries from here on
    events: int  # events since the subscription started
    delivered: int  # the last event number its rest-hook endpoint accepted

    def owned_by(self, principal: Principal) -> bool:
        return owner_key(self.owner) == owner_key(principal)


@dataclass(frozen=True)
class Event:
    number: int  # the subscription's event number, from 1
    time_ms: int  # when the server saw it
    entry_index: int  # the ledger entry of the reading
    resource: dict[str, Any]  # the Observation

    @property
    def focus(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(frozen=True)
class Match:
    """A new Observation for a subscription: an event to record."""

    subscription: str
    entry_index: int
    resource: dict[str, Any]


class SubscriptionStore:
    """Subscriptions in one SQLite file; every method is safe from any thread."""

    def __init__(self, path: Path, *, keep_events: int = 1000) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self.keep_events = keep_events

    def create(
        self,
        owner: Principal,
        spec: SubscriptionSpec,
        now_ms: int,
        start_position: int,
        *,
        per_owner: int,
        total: int,
    ) -> StoredSubscription:
        """Store a new subscription (a rest-hook's ``requested`` until its handshake, a
        websocket's ``active``); :class:`SubscriptionError` past the owner's or the server's
        bound - counted in the same transaction, so concurrent creates cannot pass it."""
        status: Status = "requested" if spec.channel == "rest-hook" else "active"
        stored = StoredSubscription(
            secrets.token_hex(8), owner, spec, status, None, now_ms, start_position, 0, 0
        )
        key = owner_key(owner)
        with self._db.transaction() as cur:
            (mine,) = cur.execute(
                "SELECT count(*) FROM subscriptions WHERE owner = ?", (key,)
            ).fetchone()
            (everyone,) = cur.execute("SELECT count(*) FROM subscriptions").fetchone()
            if mine >= per_owner:
                raise SubscriptionError(
                    "too-many-subscriptions",
                    f"at most {per_owner} subscriptions each: delete one first",
                    "throttled",
                )
            if everyone >= total:
                raise SubscriptionError(
                    "server-full", "this server holds all the subscriptions it can", "throttled"
                )
            cur.execute(
                "INSERT INTO subscriptions (id, owner, principal, spec, topic, patient, status,"
                " error, created_ms, start_position) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    stored.id, key, principal_json(owner), _spec_json(spec), spec.topic.name,
                    spec.patient, status, now_ms, start_position,
                ),
            )  # fmt: skip
        return stored

    def get(self, sub_id: str) -> StoredSubscription | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM subscriptions WHERE id = ?", sub_id)
        return _stored(rows[0]) if rows else None

    def of_owner(self, principal: Principal) -> list[StoredSubscription]:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM subscriptions WHERE owner = ? ORDER BY created_ms, id",
            owner_key(principal),
        )
        return [_stored(r) for r in rows]

    def live(self) -> list[StoredSubscription]:
        """Those that still produce events: requested or active."""
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM subscriptions WHERE status IN (?, ?) ORDER BY id", *LIVE
        )
        return [_stored(r) for r in rows]

    def delete(self, sub_id: str) -> bool:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM events WHERE subscription = ?", (sub_id,))
            return cur.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount > 0

    def set_status(
        self, sub_id: str, status: Status, error: str | None = None, *, unless: Status | None = None
    ) -> None:
        """Change a subscription's status (``unless`` it is that status already)."""
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE subscriptions SET status = ?, error = ? WHERE id = ? AND status IS NOT ?",
                (status, error, sub_id, unless),
            )

    def mark_delivered(self, sub_id: str, number: int) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE subscriptions SET delivered = max(delivered, ?) WHERE id = ?",
                (number, sub_id),
            )

    def position(self) -> int | None:
        """Where the engine has matched the ledger up to, or None before its first run."""
        rows = self._db.query("SELECT position FROM cursor WHERE name = 'engine'")
        return cast(int, rows[0][0]) if rows else None

    def record(self, matches: Sequence[Match], position: int, now_ms: int) -> dict[str, int]:
        """Record ``matches`` as events and move the cursor to ``position``, in one
        transaction; each subscription keeps its last ``keep_events``. The new event count of
        each subscription that had one."""
        counts: dict[str, int] = {}
        with self._db.transaction() as cur:
            for match in matches:
                row = cur.execute(
                    "UPDATE subscriptions SET events = events + 1 WHERE id = ? AND status IN"
                    " (?, ?) RETURNING events",
                    (match.subscription, *LIVE),
                ).fetchone()
                if row is None:  # deleted or stopped meanwhile
                    continue
                counts[match.subscription] = row[0]
                cur.execute(
                    "INSERT INTO events (subscription, number, time_ms, entry_index, resource)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        match.subscription, row[0], now_ms, match.entry_index,
                        json.dumps(match.resource, separators=(",", ":")),
                    ),
                )  # fmt: skip
            for sub_id, number in counts.items():
                cur.execute(
                    "DELETE FROM events WHERE subscription = ? AND number <= ?",
                    (sub_id, number - self.keep_events),
                )
            cur.execute(
                "INSERT INTO cursor (name, position) VALUES ('engine', ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (position,),
            )
        return counts

    def events(self, sub_id: str, after: int, limit: int, until: int | None = None) -> list[Event]:
        """The subscription's kept events numbered above ``after`` (and at most ``until``),
        oldest first, at most ``limit``."""
        rows = self._db.query(
            "SELECT number, time_ms, entry_index, resource FROM events WHERE subscription = ?"
            " AND number > ? AND number <= ? ORDER BY number LIMIT ?",
            sub_id, after, until if until is not None else 2**62, limit,
        )  # fmt: skip
        return [Event(n, t, i, json.loads(r)) for n, t, i, r in rows]

    def close(self) -> None:
        self._db.close()


def _stored(row: Iterable[Any]) -> StoredSubscription:
    sub_id, principal, spec, status, error, created, start, events, delivered = row
    return StoredSubscription(
        sub_id, principal_from_json(principal), _spec_from_json(spec), status, error, created,
        start, events, delivered,
    )  # fmt: skip


def with_status(sub: StoredSubscription, status: Status, error: str | None) -> StoredSubscription:
    return replace(sub, status=status, error=error)
