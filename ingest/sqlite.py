"""One way to open ingest's SQLite files: the ledger's settings (WAL, a full fsync per commit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ledger.database import connect_sqlite


def connect(path: Path, schema: str, *, read_only: bool = False) -> sqlite3.Connection:
    """Open ``path``; a writer creates ``schema``, a reader never writes (and needs the file)."""
    db = connect_sqlite(path, read_only=read_only)
    if not read_only:
        db.executescript(schema)
    return db
