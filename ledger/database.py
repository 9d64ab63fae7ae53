"""The SQL database a ledger lives in: SQLite on one node, PostgreSQL when ingestors share a log.

:class:`Database` is the one place that knows the two apart. The ledger's modules write
their SQL once, with ``?`` placeholders and the portable subset both engines share (``INSERT
... ON CONFLICT``, ``RETURNING``); :class:`Database` adapts placeholders and column types and
runs every write inside :meth:`Database.transaction`. Connections are in autocommit mode
otherwise, so a reader never holds a snapshot open between calls.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("vitaltrail.ledger")

Dialect = Literal["sqlite", "postgres"]
_SCHEMA_LOCK = 0x7669_7461_6C73_6368  # serializes schema creation by several ingestors
Row = tuple[Any, ...]
_WAL_SWITCH = threading.Lock()  # SQLite does not wait on its busy timeout for this switch


def connect_sqlite(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """WAL, and a full fsync at every commit: a committed row survives a power cut."""
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        with _WAL_SWITCH:  # threads opening a new file at once: "database is locked" otherwise
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


class DuplicateKeyError(Exception):
    """A write broke a uniqueness constraint; the transaction was rolled back."""


class StoredRowError(Exception):
    """A stored column holds a type or size its schema does not allow: the database was edited.

    SQLite keeps whatever is written into any column, so a reader that meets such a row says
    which column is wrong instead of failing somewhere later (the auditor reports it)."""


def int_column(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoredRowError(f"{name} is not an integer ({type(value).__name__})")
    return value


def text_column(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise StoredRowError(f"{name} is not text ({type(value).__name__})")
    return value


def blob_column(value: object, name: str, size: int | None = None) -> bytes:
    """A BLOB column (bytes from SQLite, bytes or memoryview from PostgreSQL)."""
    if not isinstance(value, bytes | memoryview):
        raise StoredRowError(f"{name} is not a byte string ({type(value).__name__})")
    blob = bytes(value)
    if size is not None and len(blob) != size:
        raise StoredRowError(f"{name} is {len(blob)} bytes, not {size}")
    return blob


class Database:
    """One connection, used by one thread at a time (the lock makes that true)."""

    def __init__(self, conn: Any, dialect: Dialect, dsn: str | None = None) -> None:
        self._connection = conn
        self._dsn = dsn  # PostgreSQL: to connect again after the server dropped us
        self.dialect: Dialect = dialect
        self._lock = threading.RLock()
        self._in_transaction = False
        self._checkpointer: WalCheckpointer | None = None

    @classmethod
    def sqlite(cls, path: Path, *, read_only: bool = False) -> Database:
        conn = connect_sqlite(path, read_only=read_only)
        conn.isolation_level = None  # transactions are explicit: see transaction()
        db = cls(conn, "sqlite")
        if not read_only:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # a background thread checkpoints
            db._checkpointer = WalCheckpointer(path)
        return db

    @classmethod
    def open(cls, location: Path | str, *, read_only: bool = False) -> Database:
        """A PostgreSQL DSN (``postgresql://...``) or a SQLite file."""
        if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
            return cls.postgres(location)
        return cls.sqlite(Path(location), read_only=read_only)

    @classmethod
    def sqlite_memory(cls) -> Database:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.isolation_level = None
        return cls(conn, "sqlite")

    @classmethod
    def postgres(cls, dsn: str) -> Database:
        import psycopg  # only deployments that share a log need the driver loaded

        return cls(psycopg.connect(dsn, autocommit=True, connect_timeout=10), "postgres", dsn)

    @property
    def _conn(self) -> Any:
        """The connection; a PostgreSQL one lost between transactions is opened again (a
        transaction it was in has failed already, and its writes were never acknowledged)."""
        if self._dsn is not None and self._connection.closed and not self._in_transaction:
            import psycopg

            log.warning("the PostgreSQL connection was lost; connecting again")
            self._connection = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
        return self._connection

    @property
    def alive(self) -> bool:
        """False once the server dropped this connection (what an advisory lock holder checks)."""
        return not (self._dsn is not None and self._connection.closed)

    def _sql(self, sql: str) -> str:
        if self.dialect == "postgres":
            return sql.replace("?", "%s").replace("BLOB", "BYTEA").replace(") WITHOUT ROWID", ")")
        return sql

    def script(self, sql: str) -> None:
        """Run ``;``-separated DDL (schemas use BLOB and BIGINT; both engines read them)."""
        with self.transaction():
            if self.dialect == "postgres":  # concurrent CREATE ... IF NOT EXISTS can collide
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in filter(str.strip, sql.split(";")):
                self._conn.execute(self._sql(statement))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return [tuple(r) for r in self._conn.execute(self._sql(sql), params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def lookup_pairs(
        self, table: str, columns: tuple[str, str], value: str, keys: Sequence[tuple[Any, Any]]
    ) -> dict[tuple[Any, Any], bytes]:
        """``value`` of each row whose two-column primary key is in ``keys`` (absent: left out)."""
        found: dict[tuple[Any, Any], bytes] = {}
        a, b = columns
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            where = " OR ".join(f"({a} = ? AND {b} = ?)" for _ in chunk)
            params = [v for key in chunk for v in key]
            for x, y, blob in self.query(
                f"SELECT {a}, {b}, {value} FROM {table} WHERE {where}", params
            ):
                found[(x, y)] = bytes(blob)
        return found

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._require_transaction()
        self._conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._require_transaction()
        if not rows:
            return
        try:
            if self.dialect == "sqlite":
                self._conn.executemany(sql, rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateKeyError(str(exc)) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; the writes inside commit together (nested calls join the outer one)."""
        with self._lock:
            if self._in_transaction:
                yield
                return
            self.begin()
            try:
                yield
            except BaseException:
                self.rollback()
                raise
            self.commit()

    def begin(self) -> None:
        """Start a transaction that :meth:`commit` or :meth:`rollback` ends, on this thread."""
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        except BaseException:
            self._lock.release()
            raise
        self._in_transaction = True

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def _end(self, statement: str) -> None:
        self._require_transaction()
        try:
            self._conn.execute(statement)
        except BaseException:
            if statement == "COMMIT":  # a failed commit leaves nothing half-done behind
                with contextlib.suppress(Exception):
                    self._conn.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False
            self._lock.release()

    def _require_transaction(self) -> None:
        if not self._in_transaction:
            raise RuntimeError("ledger writes run inside Database.transaction()")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._connection.close()


class WalCheckpointer:
    """Copies committed WAL pages into the database file from a thread of its own.

    SQLite otherwise checkpoints inside whichever commit crosses 1,000 WAL pages, which puts
    a second write of the data, and an fsync, on the append path. A passive checkpoint never
    waits for the writer; should the WAL still pass ``max_wal_bytes`` (a writer that never
    pauses), a restarting checkpoint makes the writer wait once so the WAL starts over.
    """

    def __init__(self, path: Path, interval_s: float = 0.1, max_wal_bytes: int = 64 << 20) -> None:
        self._path = path
        self._wal = path.with_name(path.name + "-wal")
        self._interval_s = interval_s
        self._max_wal_bytes = max_wal_bytes
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint-{path.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        try:
            while not self._stopping.wait(self._interval_s):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            big = self._wal.exists() and self._wal.stat().st_size > self._max_wal_bytes
            conn.execute(f"PRAGMA wal_checkpoint({'RESTART' if big else 'PASSIVE'})")
        except sqlite3.Error as exc:  # busy or locked: the next round tries again
            log.debug("WAL checkpoint of %s skipped: %s", self._path, exc)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _is_unique_violation(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return getattr(exc, "sqlstate", None) == "23505"  # PostgreSQL unique_violation
