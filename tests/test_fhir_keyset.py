"""A deep page of a FHIR search costs what its first page costs: the index's keyset query is
bounded by the cursor's time in SQLite's own index range, not filtered row by row after it.

`vitaltrail bench fhir` found the page at the end of a day's walk (864 pages of 100) taking
8 ms in SQL against 0.15 ms for the first: the row-value comparison of the cursor was only a
filter, so SQLite walked every row of the pages before. Counted here in SQLite's virtual
machine steps (its progress handler), which do not depend on the machine's speed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from access.sqlite import SqliteFile
from fhirserver.index import SCHEMA, IndexReader, IndexRow, Slice

ROWS, PAGE = 20_000, 100
T0 = 1_763_700_000_000


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A day's worth of one patient's heart rate as the index holds it, and a neighbour's."""
    path = tmp_path_factory.mktemp("keyset") / "fhir-index.db"
    file = SqliteFile(path, SCHEMA)
    with file.transaction() as cur:
        cur.executemany(
            "INSERT INTO observations VALUES (?, ?, 0, ?, ?)",
            [(2 * i + p, "8867-4", f"p-{p}", T0 + i * 1000) for i in range(ROWS) for p in range(2)],
        )
    file.close()
    return path


def steps(reader: IndexReader, where: Slice) -> tuple[list[IndexRow], int]:
    """A page of ``where``, and how many steps SQLite's virtual machine took to find it."""
    counted = [0]

    def step() -> int:
        counted[0] += 1
        return 0

    reader._conn.set_progress_handler(step, 10)
    try:
        return reader.search(where, PAGE + 1), counted[0]
    finally:
        reader._conn.set_progress_handler(None, 10)


@pytest.mark.parametrize("descending", [True, False], ids=["-date", "date"])
def test_a_deep_page_is_found_in_as_few_steps_as_the_first(index: Path, descending: bool) -> None:
    reader = IndexReader(index)
    try:
        day = Slice(("p-0",), ("8867-4",), T0, T0 + ROWS * 1000, 10**9, descending)
        first, first_steps = steps(reader, day)
        walk = reader.search(day, ROWS)
        assert len(walk) == ROWS
        for depth in (PAGE, ROWS // 2, ROWS - 2 * PAGE):
            after = walk[depth - 1].key
            page, page_steps = steps(reader, replace(day, after=after))
            assert page == walk[depth : depth + PAGE + 1]  # the keyset still reads right on
            assert page_steps < 3 * first_steps + 50, (depth, page_steps, first_steps)
        assert first == walk[: PAGE + 1]
    finally:
        reader.close()
