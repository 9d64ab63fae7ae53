"""The SQLite file the access stores (users, apps, seen assertions) keep in the data directory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ledger.database import connect_sqlite


class SqliteFile:
    """One connection (WAL, fsync at commit), one writer at a time; every change is one
    ``BEGIN IMMEDIATE`` transaction, so a read-then-write (a failed-attempt count, a seen
    ``jti``) cannot interleave with another process's."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._conn = connect_sqlite(path)
        self._conn.isolation_level = None
        self._lock = threading.Lock()
        with self.transaction() as cur:
            for statement in schema.split(";"):
                if statement.strip():
                    cur.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, args))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
