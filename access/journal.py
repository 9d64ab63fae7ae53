"""The access journal: consent statements, patient keys and access events, durable at once.

The API process may not append to the ledger (the ingestor is its only writer), yet an access
must be on record before the data leaves, and a withdrawal must hold for the next request. So
every such record is first committed here: one append-only SQLite file in the data directory
(WAL, ``synchronous=FULL``: a commit survives power loss), one sequence for all of them. A
record names its ledger key and holds the exact ledger entry body; the ingestor copies new rows
into the ledger before each batch of readings (:meth:`Journal.pending`, with the cursor kept in
the ledger's meta under :attr:`Journal.cursor_name`, committed with the entries), so the order
of consents and accesses in the ledger is the order in which they were committed here.

Each journal has a random id, kept in the file: access events are keyed ``access/<id>``, and
the ledger cursor is named after it, so a journal that is lost and made anew starts its own
numbers and its own cursor instead of colliding with the old one's entries.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from access.errors import JournalConflict, JournalError
from ledger.appends import EntryKey, NewEntry
from ledger.entries import EntryKind, LedgerEntry

log = logging.getLogger("vitaltrail.access.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq         INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    grp         TEXT NOT NULL,
    num         INTEGER NOT NULL,
    body        BLOB NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (grp, num)
);
CREATE TABLE IF NOT EXISTS journal_patients (
    patient     TEXT NOT NULL,
    seq         INTEGER NOT NULL REFERENCES journal (seq),
    PRIMARY KEY (patient, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_meta (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
    BEGIN SELECT RAISE(ABORT, 'the access journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
    BEGIN SELECT RAISE(ABORT, 'the access journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_patients_no_update BEFORE UPDATE ON journal_patients
    BEGIN SELECT RAISE(ABORT, 'the access journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_patients_no_delete BEFORE DELETE ON journal_patients
    BEGIN SELECT RAISE(ABORT, 'the access journal is append-only'); END;
"""

JOURNAL_FILE = "access-journal.sqlite"
CURSOR_PREFIX = "access_journal/"  # + the journal id: the ledger meta of the last row copied
BUSY_TIMEOUT_S = 5.0  # a commit that waits longer for the write lock fails (and nothing is served)


@dataclass(frozen=True)
class Row:
    seq: int
    kind: EntryKind
    key: EntryKey
    body: bytes
    recorded_at_ms: int


@dataclass(frozen=True)
class Pending:
    """Journal rows not in the ledger yet, as ledger entries, and the cursor after them."""

    entries: list[NewEntry]
    cursor: int
    cursor_name: str

    @property
    def meta(self) -> dict[str, int]:
        """What to commit with the entries (nothing when there are none)."""
        return {self.cursor_name: self.cursor} if self.entries else {}


# Builds a record from the sequence number it will get: (kind, ledger key, body, patients).
Build = Callable[[int], tuple[EntryKind, EntryKey, bytes, Sequence[str]]]


class Journal:
    """One append-only SQLite file. Thread-safe; several processes may share the file."""

    def __init__(
        self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, create: bool = True
    ) -> None:
        """Open (or, with ``create``, make) the journal at ``path``. A reader that must not
        start a journal of its own - the ingestor - passes ``create=False`` and gets a
        :class:`JournalError` while the API has not made it yet."""
        self._lock = threading.RLock()  # a check inside append reads the journal too
        if not create and not path.exists():
            raise JournalError(f"no access journal at {path} yet")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            with self._transaction():
                self.journal_id = self._id()
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the access journal {path}: {exc}") from exc
        self.path = path

    @property
    def cursor_name(self) -> str:
        return CURSOR_PREFIX + self.journal_id

    def _id(self) -> str:
        row = self._db.execute("SELECT value FROM journal_meta WHERE name = 'id'").fetchone()
        if row is not None:
            return str(row[0])
        journal_id = secrets.token_hex(8)
        self._db.execute("INSERT INTO journal_meta VALUES ('id', ?)", (journal_id,))
        return journal_id

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock first: no upgrade deadlock
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # a failed COMMIT (disk full) leaves it open too
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def append(
        self, build: Build, recorded_at_ms: int, check: Callable[[], None] | None = None
    ) -> Row:
        """Commit one record and return it once it is durable. ``check`` runs inside the
        write transaction first (it may raise to refuse); a record whose key is taken by the
        same body is the earlier row (a redelivery), by another body a :class:`JournalConflict`.
        Raise :class:`JournalError` when nothing could be committed."""
        with self._lock:
            try:
                with self._transaction():
                    if check is not None:
                        check()
                    (last,) = self._db.execute(
                        "SELECT COALESCE(MAX(seq), 0) FROM journal"
                    ).fetchone()
                    seq = int(last) + 1
                    kind, key, body, patients = build(seq)
                    earlier = self._by_key(key)
                    if earlier is not None:
                        if earlier.body != body or earlier.kind != kind:
                            raise JournalConflict(f"{key} is recorded with other bytes")
                        return earlier
                    self._db.execute(
                        "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, int(kind), key.group, key.number, body, recorded_at_ms),
                    )
                    self._db.executemany(
                        "INSERT INTO journal_patients VALUES (?, ?)",
                        [(p, seq) for p in sorted(set(patients))],
                    )
            except sqlite3.Error as exc:
                log.error("the access journal did not commit: %s", exc)
                raise JournalError(f"the access journal did not commit ({exc})") from exc
        return Row(seq, kind, key, body, recorded_at_ms)

    def _by_key(self, key: EntryKey) -> Row | None:
        row = self._db.execute(
            "SELECT seq, kind, grp, num, body, recorded_at FROM journal WHERE grp = ? AND num = ?",
            (key.group, key.number),
        ).fetchone()
        return _row(row) if row else None

    def by_key(self, key: EntryKey) -> Row | None:
        """The row recorded under a ledger key, if any."""
        rows = self._select("WHERE grp = ? AND num = ?", (key.group, key.number))
        return rows[0] if rows else None

    def of_kinds(self, kinds: Sequence[EntryKind], patient: str) -> list[Row]:
        """The rows of these kinds that concern ``patient``, in journal order."""
        marks = ", ".join("?" for _ in kinds)
        return self._select(
            f"JOIN journal_patients p ON p.seq = journal.seq WHERE p.patient = ?"
            f" AND kind IN ({marks}) ORDER BY journal.seq",
            (patient, *(int(k) for k in kinds)),
        )

    def after(self, seq: int, limit: int = 10_000) -> list[Row]:
        return self._select("WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))

    def _select(self, where: str, args: tuple[object, ...]) -> list[Row]:
        sql = "SELECT journal.seq, kind, grp, num, body, recorded_at FROM journal " + where
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"the access journal cannot be read ({exc})") from exc
        return [_row(r) for r in rows]

    def pending(self, after: int, logged_at_ms: int, limit: int = 10_000) -> Pending:
        """Rows after the ledger's cursor ``after``, as ledger entries logged at ``logged_at_ms``
        (at most ``limit``; the next call takes the rest)."""
        rows = self.after(after, limit)
        entries = [
            NewEntry(row.key, LedgerEntry(row.kind, logged_at_ms, row.body).encode())
            for row in rows
        ]
        return Pending(entries, rows[-1].seq if rows else after, self.cursor_name)


def _row(row: tuple[Any, ...]) -> Row:
    seq, kind, grp, num, body, recorded_at = row
    return Row(seq, EntryKind(kind), EntryKey(grp, num), bytes(body), recorded_at)
