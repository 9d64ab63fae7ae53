"""Quarantine: every refused message, with its raw bytes and the reason, kept for inspection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.reasons import Reason
from ingest.sqlite import connect

MAX_KEPT_BYTES = 65536  # an oversize message is kept truncated; its full length is recorded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    payload     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason);
"""


@dataclass(frozen=True)
class QuarantineRecord:
    received_ms: int
    topic: str
    reason: Reason
    detail: str
    payload: bytes


class Quarantine:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._db = connect(path, _SCHEMA, read_only=read_only)

    def close(self) -> None:
        self._db.close()

    def add(self, records: Sequence[QuarantineRecord]) -> None:
        if not records:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO quarantine (received_ms, topic, reason, detail, size, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.received_ms,
                        r.topic,
                        r.reason.value,
                        r.detail,
                        len(r.payload),
                        r.payload[:MAX_KEPT_BYTES],
                    )
                    for r in records
                ],
            )

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason")
        return {reason: n for reason, n in rows}

    def recent(self, limit: int = 100) -> list[QuarantineRecord]:
        rows = self._db.execute(
            "SELECT received_ms, topic, reason, detail, payload FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            QuarantineRecord(ms, topic, Reason(reason), detail, bytes(payload))
            for ms, topic, reason, detail, payload in rows
        ]
