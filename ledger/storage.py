"""The Merkle log's storage in SQLite: entries, and every perfect subtree's hash.

Appending leaf ``i`` stores its hash and the hashes of the perfect subtrees it completes
(two rows per leaf on average). Any proof against any tree size is then a few indexed
lookups: O(log n) hashes, never a recomputation of leaves. The right edge of the tree (the
"frontier") is kept in memory so the current root costs nothing.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.merkle import (
    EMPTY_ROOT,
    consistency_ranges,
    fold_subtrees,
    hash_children,
    hash_leaf,
    inclusion_ranges,
    perfect_subtrees,
)

_LEVEL_SHIFT = 40  # node id = level << 40 | index: room for 2**40 leaves

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx         INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    fingerprint BLOB NOT NULL,
    data        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
"""


def open_database(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection tuned for the ledger: WAL, and a full fsync at every commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-65536")
    return db


def _node_id(level: int, index: int) -> int:
    return level << _LEVEL_SHIFT | index


class AppendStatus(enum.Enum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # same key, same fingerprint: a redelivery, already recorded
    CONFLICT = "conflict"  # same key, different fingerprint: refused


@dataclass(frozen=True)
class NewEntry:
    key: str  # one entry per key, e.g. reading/<device>/<seq>
    fingerprint: bytes  # what makes two submissions under one key the same
    data: bytes  # the leaf data, hashed into the tree


@dataclass(frozen=True)
class AppendResult:
    status: AppendStatus
    index: int


class MerkleLog:
    """An append-only RFC 9162 log. Writers: one instance, one thread. Readers: read_only."""

    def __init__(self, db: sqlite3.Connection, *, read_only: bool = False) -> None:
        self._db = db
        if not read_only:
            db.executescript(_SCHEMA)
        self._frontier: list[tuple[int, bytes]] = []  # (level, hash) of the right edge
        self.size = 0
        if not read_only:
            self._load_frontier()

    def stored_size(self) -> int:
        row = self._db.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _load_frontier(self) -> None:
        self.size = self.stored_size()
        subtrees = perfect_subtrees(0, self.size)
        hashes = self._hashes(subtrees)
        self._frontier = [(level, h) for (level, _), h in zip(subtrees, hashes, strict=True)]

    def root(self) -> bytes:
        if not self._frontier:
            return EMPTY_ROOT
        return fold_subtrees([h for _, h in self._frontier])

    def append(self, entries: Sequence[NewEntry]) -> list[AppendResult]:
        """Append entries whose keys are new, in one transaction; report the rest."""
        existing = self._lookup_keys({e.key for e in entries})
        results: list[AppendResult] = []
        rows: list[tuple[int, str, bytes, bytes]] = []
        nodes: list[tuple[int, bytes]] = []
        frontier = list(self._frontier)
        size = self.size
        for entry in entries:
            known = existing.get(entry.key)
            if known is not None:
                index, fingerprint = known
                same = fingerprint == entry.fingerprint
                status = AppendStatus.DUPLICATE if same else AppendStatus.CONFLICT
                results.append(AppendResult(status, index))
                continue
            leaf = hash_leaf(entry.data)
            rows.append((size, entry.key, entry.fingerprint, entry.data))
            nodes.append((_node_id(0, size), leaf))
            frontier.append((0, leaf))
            while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
                level, right = frontier.pop()
                _, left = frontier.pop()
                parent = hash_children(left, right)
                nodes.append((_node_id(level + 1, ((size + 1) >> (level + 1)) - 1), parent))
                frontier.append((level + 1, parent))
            existing[entry.key] = (size, entry.fingerprint)
            results.append(AppendResult(AppendStatus.APPENDED, size))
            size += 1
        if rows:
            with self._db:
                self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
                self._db.executemany("INSERT INTO nodes VALUES (?, ?)", nodes)
            self._frontier, self.size = frontier, size
        return results

    def _lookup_keys(self, keys: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for idx, key, fingerprint in self._db.execute(
                f"SELECT idx, key, fingerprint FROM entries WHERE key IN ({marks})", chunk
            ):
                found[key] = (idx, fingerprint)
        return found

    def index_of(self, key: str) -> int | None:
        row = self._db.execute("SELECT idx FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def entry(self, index: int) -> bytes | None:
        row = self._db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else bytes(row[0])

    def entries(self, start: int, end: int) -> Iterable[tuple[int, bytes]]:
        yield from self._db.execute(
            "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) from stored subtree hashes."""
        if lo == hi:
            return EMPTY_ROOT
        return fold_subtrees(self._hashes(perfect_subtrees(lo, hi)))

    def root_at(self, size: int) -> bytes:
        return self.range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._proof(inclusion_ranges(index, size), size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self._proof(consistency_ranges(old_size, new_size), new_size)

    def _proof(self, ranges: list[tuple[int, int]], size: int) -> list[bytes]:
        if size > self.stored_size():
            raise ValueError(f"the log holds fewer than {size} entries")
        per_range = [perfect_subtrees(lo, hi) for lo, hi in ranges]
        hashes = dict(
            zip(
                (n for nodes in per_range for n in nodes),
                self._hashes([n for nodes in per_range for n in nodes]),
                strict=True,
            )
        )
        return [fold_subtrees([hashes[n] for n in nodes]) for nodes in per_range]

    def _hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        if not nodes:
            return []
        ids = [_node_id(level, index) for level, index in nodes]
        marks = ",".join("?" * len(ids))
        found = dict(self._db.execute(f"SELECT id, hash FROM nodes WHERE id IN ({marks})", ids))
        missing = [node for node, i in zip(nodes, ids, strict=True) if i not in found]
        if missing:
            raise LookupError(f"the log has no stored hash for subtrees {missing[:3]}")
        return [bytes(found[i]) for i in ids]
