"""What an append takes and what it reports, entry by entry.

An entry has a key: one entry per key, ever. It may also name a key that must *not* be taken
when it is appended (a reading: its key's revocation), checked by whoever sequences the log,
atomically with the append - so no interleaving of writers can log it after that entry. Submitting a key again is a redelivery
(DUPLICATE, harmless) when the log's ``same_submission`` says the new data and the stored
data are the same submission - for ledger entries, the same kind and body whatever the time
of logging - and a CONFLICT, refused, when they are not.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload


class EntryKey(NamedTuple):
    group: str
    number: int  # >= 0; a group's numbers are dense, like a device's sequence numbers

    def __str__(self) -> str:
        return f"{self.group}/{self.number}"


class NewEntry(NamedTuple):  # a tuple: millions are made on the ingest hot path
    key: EntryKey  # e.g. ("reading/<device>", seq)
    data: bytes  # the leaf data, hashed into the tree
    unless: EntryKey | None = None  # refuse the entry if this key is taken when it is appended


class AppendStatus(enum.Enum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # same key, same submission: a redelivery, already recorded
    CONFLICT = "conflict"  # same key, another submission: refused
    REFUSED = "refused"  # its ``unless`` key was taken first; the index is that entry's


class AppendResult(NamedTuple):
    status: AppendStatus
    index: int  # type: ignore[assignment]  # the entry's index in the log, not tuple.index


class AppendResults(Sequence[AppendResult]):
    """One result per submitted entry, made when asked for: nearly every entry is appended.

    ``first`` is the index the first appended entry got; ``others`` holds the results of
    the submissions that were not appended, by position.
    """

    def __init__(self, count: int, first: int, others: dict[int, AppendResult]) -> None:
        self._count = count
        self._first = first
        self._others = others
        self._other_positions = sorted(others)

    @property
    def appended(self) -> int:
        return self._count - len(self._others)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, position: int) -> AppendResult: ...
    @overload
    def __getitem__(self, position: slice) -> Sequence[AppendResult]: ...
    def __getitem__(self, position: int | slice) -> AppendResult | Sequence[AppendResult]:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(self._count))]
        if position < 0:
            position += self._count
        if not 0 <= position < self._count:
            raise IndexError(position)
        other = self._others.get(position)
        if other is not None:
            return other
        before = bisect_left(self._other_positions, position)
        return AppendResult(AppendStatus.APPENDED, self._first + position - before)

    def __iter__(self) -> Iterator[AppendResult]:
        return (self[i] for i in range(self._count))
