"""The ledger's uniqueness index: which entry holds each key, 32 keys to a row.

A key is ``(group, number)``; a reading's is ``("reading/<device>", seq)``. A device counts
its sequence numbers up, so its keys fill a row's 32 slots in order, and a batch of 10,000
readings from 100 devices rewrites a few hundred small rows instead of inserting 10,000 index
entries. A slot holds the entry's index + 1 (0: free) and the first 16 bytes of the
submission's fingerprint, enough to tell a redelivery from a conflicting message.
"""

from __future__ import annotations

import enum
import struct
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ledger.database import Database

ROW_KEYS = 32
FINGERPRINT_BYTES = 16
_SLOT = struct.Struct(">Q16s")
ROW_BYTES = ROW_KEYS * _SLOT.size

SCHEMA = """
CREATE TABLE IF NOT EXISTS entry_keys (
    grp     TEXT NOT NULL,
    blk     BIGINT NOT NULL,
    slots   BLOB NOT NULL,
    PRIMARY KEY (grp, blk)
) WITHOUT ROWID
"""

_CACHE_ROWS = 20_000  # the writer's working set: each active device's current row

RowKey = tuple[str, int]


class EntryKey(NamedTuple):
    group: str
    number: int

    def __str__(self) -> str:
        return f"{self.group}/{self.number}"


class AppendStatus(enum.Enum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # same key, same fingerprint: a redelivery, already recorded
    CONFLICT = "conflict"  # same key, different fingerprint: refused


class NewEntry(NamedTuple):  # a tuple: millions are made on the ingest hot path
    key: EntryKey  # one entry per key, e.g. ("reading/<device>", seq)
    fingerprint: bytes  # what makes two submissions under one key the same
    data: bytes  # the leaf data, hashed into the tree


class AppendResult(NamedTuple):
    status: AppendStatus
    index: int  # type: ignore[assignment]  # the entry's index in the log, not tuple.index


class KeyIndex:
    """Reads and stages the index rows; the writer keeps its recent rows in memory."""

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self._db = db
        if not read_only:
            db.script(SCHEMA)
        self._cache: OrderedDict[RowKey, bytes] = OrderedDict()

    def find(self, keys: Iterable[EntryKey]) -> dict[EntryKey, tuple[int, bytes]]:
        """The recorded ``(index, fingerprint prefix)`` of each key that has one."""
        keys = list(keys)
        rows = self._rows({_row_key(k) for k in keys})
        found: dict[EntryKey, tuple[int, bytes]] = {}
        for key in keys:
            row = rows.get(_row_key(key))
            if row is not None:
                hit = _read(row, key.number % ROW_KEYS)
                if hit is not None:
                    found[key] = hit
        return found

    def stage(self, keys: Iterable[EntryKey]) -> StagedKeys:
        """A private, writable copy of the rows ``keys`` fall in, for one append."""
        wanted = {(group, number // ROW_KEYS) for group, number in keys}
        return StagedKeys({rk: bytearray(row) for rk, row in self._rows(wanted).items()})

    def commit(self, staged: StagedKeys) -> None:
        """Write the staged rows (inside the caller's transaction)."""
        self._db.executemany(
            "INSERT INTO entry_keys VALUES (?, ?, ?) ON CONFLICT (grp, blk)"
            " DO UPDATE SET slots = excluded.slots",
            [(grp, blk, bytes(row)) for (grp, blk), row in staged.dirty.items()],
        )

    def committed(self, staged: StagedKeys) -> None:
        """The transaction holding :meth:`commit` succeeded: remember the rows."""
        for rk, row in staged.dirty.items():
            self._remember(rk, bytes(row))

    def forget(self) -> None:
        self._cache.clear()

    def _rows(self, wanted: set[RowKey]) -> dict[RowKey, bytes]:
        found: dict[RowKey, bytes] = {}
        missing: list[RowKey] = []
        for rk in wanted:
            row = self._cache.get(rk)
            if row is None:
                missing.append(rk)
            else:
                self._cache.move_to_end(rk)
                found[rk] = row
        stored = self._db.lookup_pairs("entry_keys", ("grp", "blk"), "slots", missing)
        for (grp, blk), row in stored.items():
            rk = (str(grp), int(blk))
            found[rk] = row
            self._remember(rk, row)
        return found

    def _remember(self, rk: RowKey, row: bytes) -> None:
        self._cache[rk] = row
        self._cache.move_to_end(rk)
        if len(self._cache) > _CACHE_ROWS:
            self._cache.popitem(last=False)


class StagedKeys:
    """Index rows being changed by one append; nothing is stored until the commit."""

    def __init__(self, rows: dict[RowKey, bytearray]) -> None:
        self._rows = rows
        self.dirty: dict[RowKey, bytearray] = {}

    def claim(
        self, entries: Sequence[NewEntry], next_index: int
    ) -> tuple[list[AppendResult], list[bytes]]:
        """Give each entry whose key is free the next index; report the others.

        Returns one result per entry, and the data of the entries that got an index, in
        order. A key taken earlier in ``entries`` counts as taken.
        """
        rows, dirty = self._rows, self.dirty
        unpack, pack, slot_size = _SLOT.unpack_from, _SLOT.pack_into, _SLOT.size
        appended, duplicate, conflict = (
            AppendStatus.APPENDED,
            AppendStatus.DUPLICATE,
            AppendStatus.CONFLICT,
        )
        results: list[AppendResult] = []
        new_data: list[bytes] = []
        for (group, number), fingerprint, data in entries:
            rk = (group, number // ROW_KEYS)
            row = rows.get(rk)
            if row is None:
                row = rows[rk] = bytearray(ROW_BYTES)
            offset = (number % ROW_KEYS) * slot_size
            stored, recorded = unpack(row, offset)
            if stored:
                status = duplicate if same_fingerprint(recorded, fingerprint) else conflict
                results.append(AppendResult(status, stored - 1))
                continue
            pack(row, offset, next_index + 1, fingerprint)
            dirty[rk] = row
            results.append(AppendResult(appended, next_index))
            new_data.append(data)
            next_index += 1
        return results, new_data


def same_fingerprint(stored: bytes, fingerprint: bytes) -> bool:
    """Whether a slot's stored prefix is that of ``fingerprint``."""
    return stored == fingerprint[:FINGERPRINT_BYTES].ljust(FINGERPRINT_BYTES, b"\0")


def _row_key(key: EntryKey) -> RowKey:
    return key.group, key.number // ROW_KEYS


def _read(row: bytes | bytearray, slot: int) -> tuple[int, bytes] | None:
    stored, fingerprint = _SLOT.unpack_from(row, slot * _SLOT.size)
    return None if stored == 0 else (stored - 1, fingerprint)
