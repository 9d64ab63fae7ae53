"""One log, several ingestors: one sequences, the others feed it (PostgreSQL only).

A Merkle log needs a single writer: every append depends on the tree's right edge. When
several ingestors share a log in PostgreSQL, the one holding a session-level advisory lock
is the sequencer; it appends to the tree and seals blocks. The others are feeders: an append
inserts the entries into ``pending`` (committed, so durable) and waits until the sequencer
has appended them - in submission order, with dedup and conflicts judged as for its own - and
written each outcome to ``pending_results``. A feeder tries the lock while it waits, so when
the sequencer dies (its connection closes and the lock with it) a feeder takes over within
one poll, reloads the tree's edge from the database, and carries on with what is pending.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from ledger.appends import AppendResult, AppendResults, AppendStatus, EntryKey, NewEntry
from ledger.database import Database
from ledger.storage import Writes

log = logging.getLogger("vitaltrail.ledger")

LOCK_KEY = 0x7669_7461_6C74_7261  # "vitaltra": the log's one sequencer lock
PENDING_BATCH = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id          BIGSERIAL PRIMARY KEY,
    batch       TEXT NOT NULL,
    position    INTEGER NOT NULL,
    grp         TEXT NOT NULL,
    num         BIGINT NOT NULL,
    data        BLOB NOT NULL,
    unless_grp  TEXT,
    unless_num  BIGINT
);
CREATE TABLE IF NOT EXISTS pending_results (
    batch       TEXT NOT NULL,
    position    INTEGER NOT NULL,
    status      TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    PRIMARY KEY (batch, position)
)
"""


class SequencerLost(Exception):
    """Waiting for the sequencer took longer than the timeout."""


class Sequencer:
    """The shared-log protocol for one ingestor: sequence when holding the lock, else feed."""

    def __init__(
        self, db: Database, dsn: str, *, poll_s: float = 0.01, timeout_s: float = 60
    ) -> None:
        self._db = db
        self._lock_db = Database.postgres(dsn)  # the lock lives as long as this session
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self.leading = False
        db.script(SCHEMA)

    def close(self) -> None:
        self._lock_db.close()

    def try_lead(self) -> bool:
        """Take the sequencer lock if it is free; True if this ingestor holds it (now or before)."""
        if self.leading and not self._lock_db.alive:
            self.leading = False  # the session holding the lock is gone, and the lock with it
            log.warning("lost the sequencer lock with its database session")
        if not self.leading:
            row = self._lock_db.one("SELECT pg_try_advisory_lock(?)", (LOCK_KEY,))
            self.leading = bool(row and row[0])
            if self.leading:
                log.info("this ingestor is now the log's sequencer")
        return self.leading

    def take_pending(
        self,
    ) -> tuple[
        list[NewEntry], Callable[[AppendResults], list[tuple[str, list[tuple[object, ...]]]]]
    ]:
        """The oldest pending entries, and the writes that settle them once appended."""
        rows = self._db.query(
            "SELECT id, batch, position, grp, num, data, unless_grp, unless_num FROM pending"
            " ORDER BY id LIMIT ?",
            (PENDING_BATCH,),
        )
        entries = [
            NewEntry(
                EntryKey(str(g), int(n)),
                bytes(d),
                None if ug is None else EntryKey(str(ug), int(un)),
            )
            for _, _, _, g, n, d, ug, un in rows
        ]

        def settle(results: AppendResults) -> Writes:
            if not rows:
                return []
            outcomes = [
                (batch, position, r.status.value, r.index)
                for (_, batch, position, *_), r in zip(rows, results, strict=False)
            ]
            return [
                ("INSERT INTO pending_results VALUES (?, ?, ?, ?)", list(outcomes)),
                ("DELETE FROM pending WHERE id = ?", [(row[0],) for row in rows]),
            ]

        return entries, settle

    def submit(self, entries: Sequence[NewEntry], lead: Callable[[], object]) -> AppendResults:
        """Hand ``entries`` to the sequencer and wait for their outcomes.

        ``lead`` runs the sequencer's work here, should this ingestor take the lock while it
        waits (the old sequencer is gone).
        """
        batch = uuid.uuid4().hex
        with self._db.transaction():
            self._db.executemany(
                "INSERT INTO pending (batch, position, grp, num, data, unless_grp, unless_num)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (batch, i, e.key.group, e.key.number, e.data, *(e.unless or (None, None)))
                    for i, e in enumerate(entries)
                ],
            )
        deadline = time.monotonic() + self._timeout_s
        while True:
            rows = self._db.query(
                "SELECT position, status, idx FROM pending_results WHERE batch = ?", (batch,)
            )
            if len(rows) == len(entries):
                break
            if self.try_lead():
                lead()
                continue
            if time.monotonic() > deadline:
                raise SequencerLost(
                    f"no sequencer appended {len(entries)} entries in {self._timeout_s}s"
                )
            time.sleep(self._poll_s)
        with self._db.transaction():
            self._db.execute("DELETE FROM pending_results WHERE batch = ?", (batch,))
        outcomes = {int(p): AppendResult(AppendStatus(s), int(i)) for p, s, i in rows}
        return AppendResults(len(entries), 0, outcomes)
