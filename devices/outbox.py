"""The device's persistent queue of signed messages the broker has not acknowledged.

A message is written here before it is sent and removed only after the broker's PUBACK,
so an outage, a reconnect or a reboot of the device loses nothing; after an outage the
queue is replayed oldest first. The per-device sequence number lives here too, so it stays
monotonic across restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS next_seq (device_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    payload   BLOB NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class QueuedMessage:
    seq: int
    payload: bytes


class Outbox:
    """One device's queue in a SQLite file (several devices may share a file).

    Bounded: when ``capacity`` messages wait, :meth:`add` raises :class:`OutboxFull` rather
    than grow without limit; the caller decides what to drop.
    """

    def __init__(self, path: Path, device_id: str, capacity: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.capacity = capacity
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._length = self._db.execute(
            "SELECT count(*) FROM outbox WHERE device_id = ?", (device_id,)
        ).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return int(self._length)

    def add(self, make_payload: Callable[[int], bytes]) -> int:
        """Allocate the next sequence number, build the message for it and queue it, atomically."""
        if self._length >= self.capacity:
            raise OutboxFull(f"{self.device_id}: {self._length} messages wait to be sent")
        with self._db:
            row = self._db.execute(
                "SELECT seq FROM next_seq WHERE device_id = ?", (self.device_id,)
            ).fetchone()
            seq = row[0] if row else 0
            self._db.execute(
                "INSERT OR REPLACE INTO next_seq VALUES (?, ?)", (self.device_id, seq + 1)
            )
            self._db.execute(
                "INSERT INTO outbox VALUES (?, ?, ?)", (self.device_id, seq, make_payload(seq))
            )
        self._length += 1
        return int(seq)

    def oldest(self, limit: int) -> list[QueuedMessage]:
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox WHERE device_id = ? ORDER BY seq LIMIT ?",
            (self.device_id, limit),
        ).fetchall()
        return [QueuedMessage(seq, payload) for seq, payload in rows]

    def remove(self, seqs: list[int]) -> None:
        with self._db:
            cur = self._db.executemany(
                "DELETE FROM outbox WHERE device_id = ? AND seq = ?",
                [(self.device_id, seq) for seq in seqs],
            )
        self._length -= cur.rowcount


class OutboxFull(Exception):
    """The device has queued as many unsent messages as it may keep."""
