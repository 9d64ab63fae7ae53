"""One way to open ingest's SQLite files: WAL, a full fsync per commit, or read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, schema: str, *, read_only: bool = False) -> sqlite3.Connection:
    """Open ``path``; a writer creates ``schema``, a reader never writes (and needs the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a commit survives power loss: we ack after it
    db.executescript(schema)
    return db
