"""The Merkle log's storage: entry pages, interior hashes in tiles, and a key index.

Appending a batch hashes it level by level, then writes its entry pages
(:mod:`ledger.entry_pages`), the tiles it touched (:mod:`ledger.tiles`), the key-index rows
of its keys (:mod:`ledger.key_index`) and the new size, in one transaction. Any proof
against any tree size is then a few tile reads: O(log n) hashes, never a recomputation of
leaves. The right edge of the tree (the "frontier") is kept in memory so the current root
costs nothing. The SQL is the portable subset :class:`~ledger.database.Database` runs on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ledger.appends import AppendResult, AppendResults, AppendStatus, EntryKey, NewEntry
from ledger.database import Database, blob_column, int_column
from ledger.entry_pages import PAGE_ENTRIES, decode_page, encode_page
from ledger.key_index import KeyIndex, StagedKeys
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_ranges,
    fold_subtrees,
    inclusion_ranges,
    perfect_subtrees,
)
from ledger.row_cache import RowCache
from ledger.tiles import SLOTS, TILE_BYTES, TileKey, blank_tile, edge_tiles, locate, read_slot

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_meta (
    name    TEXT PRIMARY KEY,
    value   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS entry_pages (
    idx     BIGINT PRIMARY KEY,
    entries BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tiles (
    level   INTEGER NOT NULL,
    idx     BIGINT NOT NULL,
    hashes  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
)
"""

Writes = list[tuple[str, list[tuple[Any, ...]]]]  # (SQL, rows) to run in an append's transaction
_UPSERT = " ON CONFLICT ({key}) DO UPDATE SET {col} = excluded.{col}"
_FULL_TILE_CACHE = 4096  # 64 MiB of immutable tiles at most
_sha256 = hashlib.sha256


class MerkleLog:
    """An append-only RFC 9162 log. Writers: one instance, one thread. Readers: read_only."""

    def __init__(
        self,
        db: Database,
        *,
        read_only: bool = False,
        same_submission: Callable[[bytes, bytes], bool] = operator.eq,
    ) -> None:
        self._db = db
        self._same_submission = same_submission
        if not read_only:
            db.script(SCHEMA)
        self.keys = KeyIndex(db, read_only=read_only)
        self._frontier: list[tuple[int, bytes]] = []  # (level, hash) of the right edge
        self._edge: dict[TileKey, bytearray] = {}  # the tiles appends write into
        self._edge_page: list[bytes] = []  # the entries of the last, unfilled page
        # Full tiles never change again: those may be cached, by readers too.
        self._full_tiles: RowCache[TileKey] = RowCache(
            _FULL_TILE_CACHE, keep=lambda tile: read_slot(tile, SLOTS - 1) is not None
        )
        self.size = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="merkle-log-io")
        if not read_only:
            self.reload()

    def stored_size(self) -> int:
        return self.meta("size") or 0

    def meta(self, name: str) -> int | None:
        """A number committed with the entries (the size; the writer's own bookmarks)."""
        row = self._db.one("SELECT value FROM log_meta WHERE name = ?", (name,))
        return None if row is None else int_column(row[0], f"log_meta {name!r}")

    def reload(self) -> None:
        """Read the tree's right edge from storage (at start, or after another writer)."""
        self.size = self.stored_size()
        subtrees = perfect_subtrees(0, self.size)
        hashes = self._hashes(subtrees)
        self._frontier = [(level, h) for (level, _), h in zip(subtrees, hashes, strict=True)]
        keys = edge_tiles(self.size)
        stored = self._read_tiles(keys)
        self._edge = {k: bytearray(stored[k]) if k in stored else blank_tile() for k in keys}
        filled = self.size % PAGE_ENTRIES
        self._edge_page = self._page(self.size // PAGE_ENTRIES)[:filled] if filled else []
        self.keys.forget()

    def root(self) -> bytes:
        if not self._frontier:
            return EMPTY_ROOT
        return fold_subtrees([h for _, h in self._frontier])

    def append(
        self,
        entries: Sequence[NewEntry],
        meta: Mapping[str, int] | None = None,
        also: Callable[[AppendResults], Writes] | None = None,
    ) -> AppendResults:
        """Append entries whose keys are new, in one transaction; report the rest.

        ``meta`` numbers are committed in the same transaction (see :meth:`meta`), and so
        are the writes ``also`` makes of the results (the shared log's bookkeeping).

        The entries and their keys are written on the log's I/O thread while this thread
        hashes the tree (SQLite and PostgreSQL release the GIL), then the tiles and the new
        size join the same transaction, which commits before this returns.
        """
        staged = self.keys.stage(entries)
        taken, refused, new_data = staged.claim(entries, self.size)
        others = self._judge(entries, taken, refused)
        others.update(
            (p, AppendResult(AppendStatus.REFUSED, index)) for p, index in refused.items()
        )
        results = AppendResults(len(entries), self.size, others)
        writes = also(results) if also else []
        if not new_data and not meta and not writes:
            return results
        size = self.size + len(new_data)
        page_entries = self._edge_page + new_data
        first_page = self.size // PAGE_ENTRIES
        pages = [
            (first_page + i, encode_page(page_entries[start : start + PAGE_ENTRIES]))
            for i, start in enumerate(range(0, len(page_entries), PAGE_ENTRIES))
        ]
        writing = self._io.submit(self._write_entries, pages, staged)
        try:
            tiles, frontier = self._hash_into_tiles(new_data)
        except BaseException:
            self._io.submit(self._abandon, writing).result()
            raise
        numbers = {**(meta or {}), "size": size}
        self._io.submit(self._write_tree, writing, tiles, numbers, writes).result()
        self.keys.committed(staged)
        self._frontier, self.size = frontier, size
        edge = set(edge_tiles(size))
        self._edge = {k: t for k, t in tiles.items() if k in edge}
        self._edge_page = page_entries[len(page_entries) - size % PAGE_ENTRIES :]
        return results

    # The three steps of an append's transaction, all on the I/O thread.

    def _write_entries(self, pages: list[tuple[int, bytes]], staged: StagedKeys) -> None:
        self._db.begin()
        try:
            self._db.executemany(
                "INSERT INTO entry_pages VALUES (?, ?)" + _UPSERT.format(key="idx", col="entries"),
                pages,
            )
            self.keys.commit(staged)
        except BaseException:
            self._db.rollback()
            raise

    def _write_tree(
        self,
        writing: Future[None],
        tiles: dict[TileKey, bytearray],
        meta: dict[str, int],
        writes: Writes,
    ) -> None:
        writing.result()  # raises if the entries could not be written (rolled back already)
        try:
            self._db.executemany(
                "INSERT INTO tiles VALUES (?, ?, ?)"
                + _UPSERT.format(key="level, idx", col="hashes"),
                [(level, idx, bytes(tile)) for (level, idx), tile in tiles.items()],
            )
            self._db.executemany(
                "INSERT INTO log_meta VALUES (?, ?)" + _UPSERT.format(key="name", col="value"),
                list(meta.items()),
            )
            for sql, rows in writes:
                self._db.executemany(sql, rows)
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def _abandon(self, writing: Future[None]) -> None:
        if writing.exception() is None:
            self._db.rollback()

    def close(self) -> None:
        self._io.shutdown(wait=True)

    def _judge(
        self, entries: Sequence[NewEntry], taken: dict[int, int], refused: dict[int, int]
    ) -> dict[int, AppendResult]:
        """Redelivery or conflict, for each submission whose key was taken (the rare path)."""
        appended_positions: list[int] = []
        if any(index >= self.size for index in taken.values()):  # taken within this batch
            appended_positions = [
                p for p in range(len(entries)) if p not in taken and p not in refused
            ]
        judged: dict[int, AppendResult] = {}
        for position, index in taken.items():
            if index >= self.size:
                recorded = entries[appended_positions[index - self.size]].data
            else:
                recorded = self.entry(index) or b""
            same = self._same_submission(recorded, entries[position].data)
            status = AppendStatus.DUPLICATE if same else AppendStatus.CONFLICT
            judged[position] = AppendResult(status, index)
        return judged

    def _hash_into_tiles(
        self, data: Sequence[bytes]
    ) -> tuple[dict[TileKey, bytearray], list[tuple[int, bytes]]]:
        """Hash new leaves and every subtree they complete, level by level, into tile copies.

        At level ``h`` the new nodes are ``[old >> h, new >> h)``; when ``old >> h`` is odd the
        first one's left sibling is the frontier's level-``h`` subtree.
        """
        old, new = self.size, self.size + len(data)
        tiles = {k: bytearray(v) for k, v in self._edge.items()}  # committed only on success
        known = dict(self._frontier)  # level -> hash of the old right edge
        level_nodes = [_sha256(b"\x00" + d).digest() for d in data]
        latest: dict[int, bytes] = {}  # level -> last new node, for the new frontier
        level = 0
        while level_nodes:
            first = old >> level
            _write_nodes(tiles, level, first, level_nodes)
            latest[level] = level_nodes[-1]
            if first & 1:
                level_nodes = [known[level], *level_nodes]
            pairs = zip(level_nodes[0::2], level_nodes[1::2], strict=False)
            level_nodes = [_sha256(b"\x01" + left + right).digest() for left, right in pairs]
            level += 1
        frontier = [
            (lvl, latest[lvl] if (new >> lvl) - 1 >= (old >> lvl) else known[lvl])
            for lvl, _ in perfect_subtrees(0, new)
        ]
        return tiles, frontier

    def index_of(self, key: EntryKey) -> int | None:
        return self.keys.find([key]).get(key)

    def entry(self, index: int) -> bytes | None:
        """Entry ``index``, or None. Pages are written with the size they make, in one
        transaction, so a stored page never holds an entry beyond the log."""
        if index < 0:
            return None
        page = self._page(index // PAGE_ENTRIES)
        offset = index % PAGE_ENTRIES
        return page[offset] if offset < len(page) else None

    def entries(self, start: int, end: int) -> Iterable[tuple[int, bytes]]:
        """Entries ``[start, end)`` in order, read a few pages at a time."""
        end = min(end, self.stored_size())
        while start < end:
            first, last = start // PAGE_ENTRIES, (end - 1) // PAGE_ENTRIES
            rows = self._db.query(
                "SELECT idx, entries FROM entry_pages WHERE idx >= ? AND idx <= ? ORDER BY idx",
                (first, min(last, first + 63)),
            )
            if not rows:
                return
            for page_idx, page in rows:
                base = int(page_idx) * PAGE_ENTRIES
                for offset, data in enumerate(decode_page(bytes(page))):
                    if start <= base + offset < end:
                        yield base + offset, data
            start = (int(rows[-1][0]) + 1) * PAGE_ENTRIES

    def _page(self, page_idx: int) -> list[bytes]:
        row = self._db.one("SELECT entries FROM entry_pages WHERE idx = ?", (page_idx,))
        return [] if row is None else decode_page(blob_column(row[0], f"entry page {page_idx}"))

    def page_rows(self, batch: int = 64) -> Iterator[tuple[Any, Any]]:
        """Every entry page ``(idx, entries)`` exactly as stored, in order, a few at a time
        (for the auditor, which checks each column and decodes each page itself)."""
        rows = self._db.query("SELECT idx, entries FROM entry_pages ORDER BY idx LIMIT ?", (batch,))
        while rows:
            yield from rows
            if len(rows) < batch:
                return
            rows = self._db.query(
                "SELECT idx, entries FROM entry_pages WHERE idx > ? ORDER BY idx LIMIT ?",
                (rows[-1][0], batch),
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
        nodes = [n for subtrees in per_range for n in subtrees]
        hashes = dict(zip(nodes, self._hashes(nodes), strict=True))
        return [fold_subtrees([hashes[n] for n in subtrees]) for subtrees in per_range]

    def _hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        located = [locate(level, index) for level, index in nodes]
        tiles = self._read_tiles({key for key, _ in located})
        hashes: list[bytes] = []
        for node, (key, slot) in zip(nodes, located, strict=True):
            value = read_slot(tiles[key], slot) if key in tiles else None
            if value is None:
                raise LookupError(f"the log has no stored hash for subtree {node}")
            hashes.append(value)
        return hashes

    def stored_tile(self, key: TileKey) -> bytes | None:
        """Tile ``key`` exactly as stored (for the auditor), bypassing every cache."""
        row = self._db.one("SELECT hashes FROM tiles WHERE level = ? AND idx = ?", key)
        return None if row is None else blob_column(row[0], "hashes", TILE_BYTES)

    def _read_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        return self._full_tiles.read(keys, self._fetch_tiles)

    def _fetch_tiles(self, keys: list[TileKey]) -> dict[TileKey, bytes]:
        stored = self._db.lookup_pairs("tiles", ("level", "idx"), "hashes", keys)
        return {(int(level), int(idx)): tile for (level, idx), tile in stored.items()}


def _write_nodes(
    tiles: dict[TileKey, bytearray], level: int, first: int, hashes: Sequence[bytes]
) -> None:
    """Store consecutive nodes ``(level, first ...)``, one slice per tile they fall in."""
    done = 0
    while done < len(hashes):
        key, slot = locate(level, first + done)
        room = _room_in_row(level, first + done)
        chunk = hashes[done : done + room]
        tile = tiles.get(key)
        if tile is None:
            tile = tiles[key] = blank_tile()
        tile[slot * HASH_SIZE : (slot + len(chunk)) * HASH_SIZE] = b"".join(chunk)
        done += len(chunk)


def _room_in_row(level: int, index: int) -> int:
    """Slots left in the tile row holding node ``(level, index)``."""
    width = 256 >> (level % 8)
    return width - (index & (width - 1))
