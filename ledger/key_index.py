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
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ledger.appends import EntryKey, NewEntry
from ledger.database import Database
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
