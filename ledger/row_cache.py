"""A bounded least-recently-used cache of stored rows, read through to the database."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K")


class RowCache(Generic[K]):
    """Rows by key; ``keep`` says which rows may be cached (e.g. only those that never change)."""

    def __init__(self, limit: int, keep: Callable[[bytes], bool] = lambda _: True) -> None:
        self._rows: OrderedDict[K, bytes] = OrderedDict()
        self._limit = limit
        self._keep = keep

    def read(self, keys: Iterable[K], fetch: Callable[[list[K]], dict[K, bytes]]) -> dict[K, bytes]:
        """The rows of ``keys`` that exist: cached ones, then ``fetch`` for the others."""
        found: dict[K, bytes] = {}
        missing: list[K] = []
        for key in keys:
            row = self._rows.get(key)
            if row is None:
                missing.append(key)
            else:
                self._rows.move_to_end(key)
                found[key] = row
        if missing:
            for key, row in fetch(missing).items():
                found[key] = row
                self.put(key, row)
        return found

    def put(self, key: K, row: bytes) -> None:
        if not self._keep(row):
            return
        self._rows[key] = row
        self._rows.move_to_end(key)
        if len(self._rows) > self._limit:
            self._rows.popitem(last=False)

    def clear(self) -> None:
        self._rows.clear()
