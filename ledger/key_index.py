"""The ledger's uniqueness index: which entry holds each key, 16 keys to a row.

A key is ``(group, number)``; a reading's is ``("reading/<device>", seq)``. A device counts
its sequence numbers up, so its keys fill a row's slots in order, and a batch of 10,000
readings from 100 devices rewrites a few hundred 128-byte rows instead of inserting 10,000
index entries. A slot is the entry's index with the top bit set (all zero: free). Whether a
second submission under a taken key is a redelivery or a conflict is decided by comparing
it with the stored entry (:class:`~ledger.storage.MerkleLog`), on that rare path only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from ledger.appends import EntryKey, NewEntry
from ledger.database import Database, StoredRowError, blob_column, int_column, text_column
from ledger.row_cache import RowCache

ROW_KEYS = 16
_SLOT = struct.Struct(">Q")
_TAKEN = 1 << 63
ROW_BYTES = ROW_KEYS * _SLOT.size

SCHEMA = """
CREATE TABLE IF NOT EXISTS entry_keys (
    grp     TEXT NOT NULL,
    blk     BIGINT NOT NULL,
    slots   BLOB NOT NULL,
    PRIMARY KEY (grp, blk)
) WITHOUT ROWID
"""

_CACHE_ROWS = 50_000  # the writer's working set: each active device's current row

RowKey = tuple[str, int]


class KeyIndex:
    """Reads and stages the index rows; the writer keeps its recent rows in memory."""

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self._db = db
        if not read_only:
            db.script(SCHEMA)
        # Only the writer may cache rows: it is the one that changes them. A reader's cached
        # row would hide keys taken after it was read.
        self._cache: RowCache[RowKey] = RowCache(_CACHE_ROWS, keep=lambda _: not read_only)

    def find(self, keys: Iterable[EntryKey]) -> dict[EntryKey, int]:
        """The index of the entry recorded under each key that has one."""
        keys = list(keys)
        rows = self._rows({_row_key(k) for k in keys})
        found: dict[EntryKey, int] = {}
        for key in keys:
            row = rows.get(_row_key(key))
            if row is not None:
                (slot,) = _SLOT.unpack_from(row, (key.number % ROW_KEYS) * _SLOT.size)
                if slot & _TAKEN:
                    found[key] = slot & ~_TAKEN
        return found

    def stage(self, entries: Sequence[NewEntry]) -> StagedKeys:
        """A private, writable copy of the rows the entries' keys (and ``unless`` keys) fall in."""
        wanted = {(e.key.group, e.key.number // ROW_KEYS) for e in entries}
        wanted |= {(e.unless.group, e.unless.number // ROW_KEYS) for e in entries if e.unless}
        return StagedKeys({rk: bytearray(row) for rk, row in self._rows(wanted).items()})

    def commit(self, staged: StagedKeys) -> None:
        """Write the staged rows (inside the caller's transaction)."""
        self._db.executemany(
            "INSERT INTO entry_keys VALUES (?, ?, ?) ON CONFLICT (grp, blk)"
            " DO UPDATE SET slots = excluded.slots",
            [(grp, blk, bytes(row)) for (grp, blk), row in staged.rows.items()],
        )

    def committed(self, staged: StagedKeys) -> None:
        """The transaction holding :meth:`commit` succeeded: remember the rows."""
        for rk, row in staged.rows.items():
            self._cache.put(rk, bytes(row))

    def forget(self) -> None:
        self._cache.clear()

    def stored_rows(self, batch: int = 1000) -> Iterator[tuple[Any, ...]]:
        """Every index row ``(grp, blk, slots)`` exactly as stored, in key order, a batch at a
        time (for the auditor, which compares them with the rows the entries make)."""
        rows = self._db.query(
            "SELECT grp, blk, slots FROM entry_keys ORDER BY grp, blk LIMIT ?", (batch,)
        )
        while rows:
            yield from rows
            if len(rows) < batch:
                return
            grp, blk = rows[-1][0], rows[-1][1]
            rows = self._db.query(
                "SELECT grp, blk, slots FROM entry_keys WHERE grp > ? OR (grp = ? AND blk > ?)"
                " ORDER BY grp, blk LIMIT ?",
                (grp, grp, blk, batch),
            )

    def _rows(self, wanted: set[RowKey]) -> dict[RowKey, bytes]:
        return self._cache.read(wanted, self._fetch)

    def _fetch(self, keys: list[RowKey]) -> dict[RowKey, bytes]:
        stored = self._db.lookup_pairs("entry_keys", ("grp", "blk"), "slots", keys)
        return {(str(grp), int(blk)): row for (grp, blk), row in stored.items()}


class StagedKeys:
    """Index rows being changed by one append; nothing is stored until the commit."""

    def __init__(self, rows: dict[RowKey, bytearray]) -> None:
        self.rows = rows

    def claim(self, entries: Sequence[NewEntry], first: int) -> Claims:
        """Give each entry whose key is free (and whose ``unless`` key is not taken) the next
        index, from ``first``. Keys taken earlier in ``entries`` count as taken. A key taken
        before is judged as a redelivery or a conflict whatever its ``unless`` key says: the
        entry was logged before that key was taken."""
        rows, pack, unpack, slot_size = self.rows, _SLOT.pack_into, _SLOT.unpack_from, _SLOT.size
        taken: dict[int, int] = {}
        refused: dict[int, int] = {}
        new_data: list[bytes] = []
        next_index = first
        for position, ((group, number), data, unless) in enumerate(entries):
            rk = (group, number // ROW_KEYS)
            row = rows.get(rk)
            if row is None:
                row = rows[rk] = bytearray(ROW_BYTES)
            offset = (number % ROW_KEYS) * slot_size
            if row[offset] & 0x80:  # logged before: a redelivery or a conflict, not an append
                taken[position] = unpack(row, offset)[0] & ~_TAKEN
                continue
            if unless is not None:
                blocker = self._taken(unless)
                if blocker is not None:
                    refused[position] = blocker
                    continue
            pack(row, offset, next_index | _TAKEN)
            new_data.append(data)
            next_index += 1
        return Claims(taken, refused, new_data)

    def _taken(self, key: EntryKey) -> int | None:
        row = self.rows.get((key.group, key.number // ROW_KEYS))
        if row is None:
            return None
        (slot,) = _SLOT.unpack_from(row, (key.number % ROW_KEYS) * _SLOT.size)
        return slot & ~_TAKEN if slot & _TAKEN else None


class Claims(NamedTuple):
    taken: dict[int, int]  # position -> index of the entry already holding its key
    refused: dict[int, int]  # position -> index of the entry holding its ``unless`` key
    new_data: list[bytes]  # the data of the entries that got an index, in order


def _row_key(key: EntryKey) -> RowKey:
    return key.group, key.number // ROW_KEYS


class ExpectedKeys:
    """The index rows a log's entries make, rebuilt entry by entry by the auditor and compared
    with the stored rows: every entry's key points at it, and nothing else is taken."""

    def __init__(self) -> None:
        self._rows: dict[RowKey, bytearray] = {}
        self._unkeyed: set[int] = set()

    def unknown(self, index: int) -> None:
        """Entry ``index`` does not decode, so its key is unknown (itself a finding): an index
        slot pointing at it is not another one."""
        self._unkeyed.add(index)

    def take(self, key: EntryKey, index: int) -> int | None:
        """Record that entry ``index`` holds ``key``; return the earlier entry holding it, if
        one does (one entry per key, ever: the second is a finding, and keeps no slot)."""
        row = self._rows.get(_row_key(key))
        if row is None:
            row = self._rows[_row_key(key)] = bytearray(ROW_BYTES)
        offset = (key.number % ROW_KEYS) * _SLOT.size
        (slot,) = _SLOT.unpack_from(row, offset)
        if slot & _TAKEN:
            return int(slot & ~_TAKEN)
        _SLOT.pack_into(row, offset, index | _TAKEN)
        return None

    def differences(self, stored: Iterable[tuple[Any, ...]]) -> Iterator[tuple[str, str]]:
        """``(where, what)`` for each stored row that is malformed or differs from the rebuilt
        one, then for each rebuilt row that is not stored."""
        seen: set[RowKey] = set()
        for raw in stored:
            where = f"key index row {raw[0]!r}/{raw[1]!r}"
            try:
                grp, blk = text_column(raw[0], "grp"), int_column(raw[1], "blk")
                slots = blob_column(raw[2], "slots", ROW_BYTES)
            except StoredRowError as exc:
                yield where, str(exc)
                continue
            seen.add((grp, blk))
            want = self._rows.get((grp, blk), bytes(ROW_BYTES))
            for n in range(ROW_KEYS):
                (have,) = _SLOT.unpack_from(slots, n * _SLOT.size)
                (expected,) = _SLOT.unpack_from(want, n * _SLOT.size)
                if have != expected:
                    if have & _TAKEN and not expected & _TAKEN and have & ~_TAKEN in self._unkeyed:
                        continue
                    key = EntryKey(grp, blk * ROW_KEYS + n)
                    yield (
                        where,
                        f"key {key}: {_describe(have)} in the index, {_describe(expected)} in the log",
                    )
        for (grp, blk), row in self._rows.items():
            if (grp, blk) not in seen:
                taken = [n for n in range(ROW_KEYS) if row[n * _SLOT.size] & 0x80]
                first = EntryKey(grp, blk * ROW_KEYS + taken[0])
                (slot,) = _SLOT.unpack_from(row, taken[0] * _SLOT.size)
                yield (
                    f"key index row {grp!r}/{blk}",
                    f"missing: key {first} of {_describe(slot)} (and {len(taken) - 1} more) not in the index",
                )


def _describe(slot: int) -> str:
    return (
        f"entry {slot & ~_TAKEN}" if slot & _TAKEN else ("free" if slot == 0 else f"junk {slot:#x}")
    )
