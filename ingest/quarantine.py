"""Quarantine: refused messages, kept for inspection within a size and an age budget.

Anyone who can publish can fill it, so what it keeps is bounded three ways
(:class:`QuarantineBudget`): of each message, what identifies it (topic, length, SHA-256 of
every byte, reason, detail) and at most ``keep_bytes`` of its bytes; all records together at
most ``max_bytes`` (past it the oldest go, in one delete); and records older than
``max_age_s`` are deleted by :meth:`Quarantine.expire`, which the ingestor runs on a timer.
The ingestor's counters count every refusal, and every record cut short or deleted, so the
numbers stay whole when the records do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.reasons import Reason
from ingest.sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    sha256      BLOB
);
CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason);
CREATE INDEX IF NOT EXISTS quarantine_by_time ON quarantine (received_ms);
"""

_INCREMENTAL = 2  # PRAGMA auto_vacuum
MAX_TEXT_CHARS = 256  # a topic or a detail longer than this is cut (the digest identifies it)
ROW_OVERHEAD_BYTES = 96  # a record's fixed costs: digest, numbers, row and index entries
# What a stored record costs against the budget, in SQL (old rows have no digest: same cost).
_COST = (
    f"length(payload) + length(CAST(topic AS BLOB)) + length(CAST(detail AS BLOB))"
    f" + {ROW_OVERHEAD_BYTES}"
)


@dataclass(frozen=True)
class QuarantineBudget:
    keep_bytes: int = 1024  # of each refused message's bytes (its length and digest always)
    max_bytes: int = 128 * 2**20  # every record together; past it the oldest are deleted
    max_age_s: float = 30 * 86_400  # older records are deleted (Quarantine.expire)


@dataclass(frozen=True)
class QuarantineRecord:
    received_ms: int
    topic: str
    reason: Reason
    detail: str
    payload: bytes  # what was received; stored cut to the budget's keep_bytes
    size: int = -1  # the message's full length (-1: len(payload))
    sha256: bytes | None = None  # of the full message (None: computed from payload)


@dataclass(frozen=True)
class Stored:
    """What one :meth:`Quarantine.add` did beyond storing: records cut, and old ones deleted."""

    truncated: int = 0
    evicted: int = 0


class Quarantine:
    def __init__(
        self, path: Path, *, read_only: bool = False, budget: QuarantineBudget | None = None
    ) -> None:
        self._db = connect(path, _SCHEMA, read_only=read_only)
        self.budget = budget or QuarantineBudget()
        self._stored_bytes = 0
        if not read_only:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(quarantine)")}
            if "sha256" not in columns:  # made before the digest was kept
                with self._db:
                    self._db.execute("ALTER TABLE quarantine ADD COLUMN sha256 BLOB")
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
                # So that expire() can hand freed pages back; a file made before this (or just
                # now, in WAL mode) is rebuilt once to take the setting.
                self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                self._db.execute("VACUUM")
            self._stored_bytes = self._cost("1")

    def close(self) -> None:
        self._db.close()

    @property
    def stored_bytes(self) -> int:
        """What the records cost against ``budget.max_bytes`` now."""
        return self._stored_bytes

    def _cost(self, where: str, params: Sequence[object] = ()) -> int:
        row = self._db.execute(
            f"SELECT coalesce(sum({_COST}), 0) FROM quarantine WHERE {where}", params
        ).fetchone()
        return int(row[0])

    def add(self, records: Sequence[QuarantineRecord]) -> Stored:
        if not records:
            return Stored()
        keep = self.budget.keep_bytes
        rows = [
            (
                r.received_ms,
                r.topic[:MAX_TEXT_CHARS],
                r.reason.value,
                r.detail[:MAX_TEXT_CHARS],
                r.size if r.size >= 0 else len(r.payload),
                r.payload[:keep],
                r.sha256 if r.sha256 is not None else hashlib.sha256(r.payload).digest(),
            )
            for r in records
        ]
        truncated = sum(1 for r in records if len(r.payload) > keep)
        with self._db:
            self._db.executemany(
                "INSERT INTO quarantine (received_ms, topic, reason, detail, size, payload, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._stored_bytes += sum(
                len(payload) + len(topic.encode()) + len(detail.encode()) + ROW_OVERHEAD_BYTES
                for _, topic, _, detail, _, payload, _ in rows
            )
            evicted = self._evict() if self._stored_bytes > self.budget.max_bytes else 0
        return Stored(truncated, evicted)

    def _evict(self) -> int:
        """Delete the oldest records until a tenth of the budget is free again (so evictions
        come in batches, not one per insert). In the caller's transaction."""
        to_free = self._stored_bytes - self.budget.max_bytes * 9 // 10
        freed = evicted = 0
        last_id = 0
        while freed < to_free:
            chunk = self._db.execute(
                f"SELECT id, {_COST} FROM quarantine WHERE id > ? ORDER BY id LIMIT 1000",
                (last_id,),
            ).fetchall()
            if not chunk:
                break
            for row_id, cost in chunk:
                last_id, freed, evicted = row_id, freed + cost, evicted + 1
                if freed >= to_free:
                    break
        self._db.execute("DELETE FROM quarantine WHERE id <= ?", (last_id,))
        self._stored_bytes -= freed
        return evicted

    def expire(self, now_ms: int) -> int:
        """Delete records older than the budget's age; returns how many. Their pages go back
        to the file system."""
        cutoff = now_ms - int(self.budget.max_age_s * 1000)
        with self._db:
            freed = self._cost("received_ms < ?", (cutoff,))
            deleted = self._db.execute(
                "DELETE FROM quarantine WHERE received_ms < ?", (cutoff,)
            ).rowcount
            self._stored_bytes -= freed
        if deleted:  # run to completion (one execute() step frees a single page)
            self._db.executescript("PRAGMA incremental_vacuum;")
        return int(deleted)

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason")
        return {reason: n for reason, n in rows}

    def recent(self, limit: int = 100) -> list[QuarantineRecord]:
        rows = self._db.execute(
            "SELECT received_ms, topic, reason, detail, payload, size, sha256 FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            QuarantineRecord(
                ms,
                topic,
                Reason(reason),
                detail,
                bytes(payload),
                size,
                bytes(digest) if digest is not None else None,
            )
            for ms, topic, reason, detail, payload, size, digest in rows
        ]
