"""The FHIR observation index follows the ledger - SQLite or PostgreSQL - and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.keys import DeviceSigner
from fhirserver.index import IndexReader, IndexRow, ObservationIndex, Slice
from ledger.ledger import LedgerReader
from tests.fhir_ledger import T0, LedgerWriter, blood_pressure, heart_rate, vitals
from tests.postgres import Postgres

BAND, CUFF = DeviceSigner.generate(), DeviceSigner.generate()


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where the ledger is: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "ledger.db"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def writer(location: str | Path) -> Iterator[LedgerWriter]:
    w = LedgerWriter(location)
    yield w
    w.close()


@pytest.fixture
def reader(location: str | Path) -> Iterator[LedgerReader]:
    r = LedgerReader(location)
    yield r
    r.close()


def _all(index: IndexReader, patient: str, as_of: int) -> list[IndexRow]:
    return index.search(Slice((patient,), None, None, None, as_of), 10_000)


def test_the_index_holds_one_row_per_observation_under_the_patient_the_ledger_names(
    writer: LedgerWriter, reader: LedgerReader, tmp_path: Path
) -> None:
    writer.register("band-1", "p-1", BAND)
    writer.register("cuff-1", "p-1", CUFF)
    hr = writer.reading("band-1", BAND, vitals(T0 + 1000))
    bp = writer.reading("cuff-1", CUFF, blood_pressure(T0 + 2000))
    batched = writer.reading("band-1", BAND, heart_rate(T0 + 3000) + heart_rate(T0 + 4000))
    index = ObservationIndex(tmp_path / "fhir-index.db")
    size = index.catch_up(reader)
    assert size == reader.log.stored_size() == 5
    rows = IndexReader(index.path)
    found = _all(rows, "p-1", size)
    assert found == [
        IndexRow(hr, "59408-5", 0, "p-1", T0 + 1000),
        IndexRow(hr, "8867-4", 0, "p-1", T0 + 1000),
        IndexRow(bp, "85354-9", 0, "p-1", T0 + 2000),  # the panel: one Observation of two
        IndexRow(batched, "8867-4", 0, "p-1", T0 + 3000),
        IndexRow(batched, "8867-4", 1, "p-1", T0 + 4000),  # a second sample of its code
    ]
    assert [r.id for r in found[2:]] == [
        f"e{bp}-85354-9",
        f"e{batched}-8867-4",
        f"e{batched}-8867-4.1",
    ]
    assert rows.patients() == ["p-1"]
    assert rows.codes("p-1") == ["59408-5", "85354-9", "8867-4"]
    assert rows.devices("p-1") == ["band-1", "cuff-1"]
    assert rows.row(bp, "85354-9") == IndexRow(bp, "85354-9", 0, "p-1", T0 + 2000)
    assert rows.row(bp, "8480-6") is None  # a component is not an Observation of its own
    rows.close()
    index.close()


def test_catching_up_reads_only_what_is_new_and_a_key_keeps_its_patient(
    writer: LedgerWriter, reader: LedgerReader, tmp_path: Path
) -> None:
    writer.register("band-1", "p-1", BAND)
    first = writer.reading("band-1", BAND, heart_rate(T0))
    index = ObservationIndex(tmp_path / "fhir-index.db")
    assert index.catch_up(reader) == 2
    # The band is given to another patient with a new key: earlier readings stay p-1's.
    new_key = DeviceSigner.generate()
    writer.register("band-1", "p-2", new_key)
    later = writer.reading("band-1", new_key, heart_rate(T0 + 5000))
    again = ObservationIndex(tmp_path / "fhir-index.db")  # another process, the same file
    assert again.catch_up(reader) == 4
    rows = IndexReader(index.path)
    assert [r.entry_index for r in _all(rows, "p-1", 4)] == [first]
    assert [r.entry_index for r in _all(rows, "p-2", 4)] == [later]
    assert _all(rows, "p-2", later) == []  # as_of: entries below it only
    assert index.catch_up(reader) == 4  # nothing new: nothing done
    # what arrived between two sizes caught up to, as a subscription asks
    assert [r.entry_index for r in rows.logged(2, 4)] == [later]
    assert [r.entry_index for r in rows.logged(0, 4, ["p-1"])] == [first]
    assert rows.logged(0, 4, ["p-3"]) == []
    rows.close()
    index.close()
    again.close()


def test_readings_that_do_not_decode_or_have_no_registered_key_are_left_out(
    writer: LedgerWriter, reader: LedgerReader, tmp_path: Path
) -> None:
    writer.register("band-1", "p-1", BAND)
    writer.raw("junk", b"\xd2\x84not a cose message")
    writer.reading("stranger", DeviceSigner.generate(), heart_rate(T0))  # no registration
    good = writer.reading("band-1", BAND, heart_rate(T0))
    index = ObservationIndex(tmp_path / "fhir-index.db")
    assert index.catch_up(reader) == 4
    rows = IndexReader(index.path)
    assert [r.entry_index for r in _all(rows, "p-1", 4)] == [good]
    assert rows.patients() == ["p-1"]
    rows.close()
    index.close()


def test_a_log_that_does_not_start_with_what_was_indexed_is_indexed_again(
    tmp_path: Path,
) -> None:
    first = LedgerWriter(tmp_path / "a.db")
    first.register("band-1", "p-1", BAND)
    first.reading("band-1", BAND, heart_rate(T0))
    first.close()
    index = ObservationIndex(tmp_path / "fhir-index.db")
    ledger_a = LedgerReader(tmp_path / "a.db")
    assert index.catch_up(ledger_a) == 2
    ledger_a.close()
    index.close()
    # Another log of the same size and more: the data directory's ledger was replaced.
    other = LedgerWriter(tmp_path / "b.db")
    other.register("band-9", "p-9", CUFF)
    other.reading("band-9", CUFF, heart_rate(T0))
    other.reading("band-9", CUFF, heart_rate(T0 + 1))
    other.close()
    index = ObservationIndex(tmp_path / "fhir-index.db")
    ledger_b = LedgerReader(tmp_path / "b.db")
    assert index.catch_up(ledger_b) == 3
    rows = IndexReader(index.path)
    assert rows.patients() == ["p-9"]
    assert len(_all(rows, "p-9", 3)) == 2
    rows.close()
    ledger_b.close()
    index.close()


def test_writers_on_many_threads_index_each_entry_once(
    writer: LedgerWriter, reader: LedgerReader, location: str | Path, tmp_path: Path
) -> None:
    writer.register("band-1", "p-1", BAND)
    for i in range(300):
        writer.reading("band-1", BAND, heart_rate(T0 + i))
    index = ObservationIndex(tmp_path / "fhir-index.db")
    other = ObservationIndex(tmp_path / "fhir-index.db")
    sizes: list[int] = []

    def follow(target: ObservationIndex) -> None:
        own = LedgerReader(location)  # each thread its own connections
        sizes.append(target.catch_up(own))
        own.close()

    threads = [threading.Thread(target=follow, args=(i,)) for i in (index, other, index, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [301] * 4
    rows = IndexReader(index.path)
    found = _all(rows, "p-1", 301)
    assert len(found) == 300
    assert [r.time_ms for r in found] == [T0 + i for i in range(300)]
    rows.close()
    index.close()
    other.close()


def test_slices_sort_both_ways_resume_after_a_key_and_count(
    writer: LedgerWriter, reader: LedgerReader, tmp_path: Path
) -> None:
    writer.register("band-1", "p-1", BAND)
    writer.register("cuff-1", "p-1", CUFF)
    for i in range(5):
        writer.reading("band-1", BAND, vitals(T0 + i * 1000))
        writer.reading("cuff-1", CUFF, blood_pressure(T0 + i * 1000 + 500))
    index = ObservationIndex(tmp_path / "fhir-index.db")
    size = index.catch_up(reader)
    rows = IndexReader(index.path)
    every = _all(rows, "p-1", size)
    assert [r.key for r in every] == sorted(r.key for r in every)
    assert len(every) == 15
    hr = Slice(("p-1",), ("8867-4",), T0 + 1000, T0 + 4000, size)
    assert [r.time_ms for r in rows.search(hr, 100)] == [T0 + 1000, T0 + 2000, T0 + 3000]
    newest = Slice(("p-1",), ("8867-4", "85354-9"), None, None, size, descending=True)
    first_two = rows.search(newest, 2)
    assert [r.time_ms for r in first_two] == [T0 + 4500, T0 + 4000]
    rest = rows.search(Slice(**{**newest.__dict__, "after": first_two[-1].key}), 100)
    assert [r.time_ms for r in rest] == [
        T0 + t for t in (3500, 3000, 2500, 2000, 1500, 1000, 500, 0)
    ]
    assert rows.count(newest, 100) == 10
    assert rows.count(newest, 9) is None  # past the cap: not counted
    latest = rows.latest(Slice(("p-1",), None, None, None, size), 2)
    assert [(r.code, r.time_ms) for r in latest] == [
        ("59408-5", T0 + 4000), ("59408-5", T0 + 3000),
        ("85354-9", T0 + 4500), ("85354-9", T0 + 3500),
        ("8867-4", T0 + 4000), ("8867-4", T0 + 3000),
    ]  # fmt: skip
    rows.close()
    index.close()
