"""The pipeline copies the API's access journal into the ledger: before readings in the same
append, on the timer without readings, never twice, and never by creating a journal itself."""

from __future__ import annotations

import threading
from pathlib import Path

from access.care_teams import CareTeamStore
from access.directory import Directory
from access.directory_changes import DirectoryChange, directory_key
from access.journal import Journal
from access.trail import AccessEvent, AccessTrail
from access.users import UserStore
from devices.keys import DeviceSigner
from devices.registry import DeviceRegistry
from ingest.access_copy import JournalSource
from ingest.checks import RegistryCache
from ingest.mqtt_source import InboundMessage
from ingest.pipeline import BatchResult, Pipeline
from ingest.quarantine import Quarantine
from ingest.sqlite_store import SqliteStore
from ledger.appends import AppendStatus
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from tests.access_helpers import user_read
from tests.postgres import Postgres
from tests.stack import now_ms, signed

SIGNER = NoteSigner.generate("test.example/log")


def _pipeline(tmp_path: Path, ledger: Ledger, journal_path: Path) -> tuple[Pipeline, DeviceSigner]:
    device = DeviceSigner.generate()
    registry = DeviceRegistry(tmp_path / "registry.db")
    if registry.by_kid(device.key.kid) is None:
        registry.register(f"band-{device.key.kid.hex()[:6]}", "patient-1", device.key)
    pipeline = Pipeline(
        ledger,
        SqliteStore(tmp_path / f"store-{id(ledger)}.db"),
        Quarantine(tmp_path / f"quarantine-{id(ledger)}.db"),
        RegistryCache(registry.by_kid),
        registry,
        topic_root="r",
        journal=JournalSource(journal_path),
    )
    return pipeline, device


def _reading(device: DeviceSigner, seq: int) -> InboundMessage:
    device_id = f"band-{device.key.kid.hex()[:6]}"
    return InboundMessage(
        f"r/{device_id}/readings", signed(device_id, device, seq), seq + 1, 1, 0, 1
    )


def _kinds(ledger: Ledger) -> list[EntryKind]:
    return [LedgerEntry.decode(d).kind for _, d in ledger.log.entries(0, ledger.size)]


def _record(journal: Journal, n: int) -> list[AccessEvent]:
    trail = AccessTrail(journal)
    return [trail.record(user_read(f"u-doc-{i}", "clinician", ("p-17",))) for i in range(n)]


def test_journal_rows_go_in_before_the_batchs_readings_and_only_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    ledger = Ledger(tmp_path / "ledger.db", SIGNER)
    pipeline, device = _pipeline(tmp_path, ledger, journal.path)
    events = _record(journal, 2)
    result = pipeline.process([_reading(device, 0)], now_ms())
    assert (result.accepted, result.access_entries) == (1, 2)
    assert _kinds(ledger) == [
        EntryKind.DEVICE_REGISTERED,
        EntryKind.ACCESS,
        EntryKind.ACCESS,
        EntryKind.READING,
    ]
    assert [ledger.log.index_of(e.ledger_key) for e in events] == [1, 2]
    assert ledger.log.meta(journal.cursor_name) == 2  # committed with the entries
    again = pipeline.process([_reading(device, 1)], now_ms())
    assert again.access_entries == 0
    assert ledger.size == 5  # one more reading, no access twice


def test_directory_changes_go_in_with_the_accesses_in_journal_order(tmp_path: Path) -> None:
    """A change to who may read is copied exactly like an access: in the order it was
    journaled against the accesses around it, before the batch's readings."""
    journal = Journal(tmp_path / "journal.db")
    ledger = Ledger(tmp_path / "ledger.db", SIGNER)
    pipeline, device = _pipeline(tmp_path, ledger, journal.path)
    teams = CareTeamStore(tmp_path / "access.db")
    directory = Directory(UserStore(tmp_path / "access.db"), teams, journal, "cli:ops")
    directory.create_team("ward")
    (read,) = _record(journal, 1)
    directory.add_patient("ward", "patient-1")
    result = pipeline.process([_reading(device, 0)], now_ms())
    assert result.access_entries == 3
    assert _kinds(ledger) == [
        EntryKind.DEVICE_REGISTERED,
        EntryKind.DIRECTORY_CHANGE,
        EntryKind.ACCESS,
        EntryKind.DIRECTORY_CHANGE,
        EntryKind.READING,
    ]
    assert ledger.log.index_of(read.ledger_key) == 2
    last = LedgerEntry.decode(ledger.log.entry(3) or b"")
    assert DirectoryChange.decode(last.body).ledger_key == directory_key(journal.journal_id, 3)
    assert pipeline.copy_journal(now_ms()).access_entries == 0  # never twice


def test_the_timer_copies_accesses_when_no_reading_arrives(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    ledger = Ledger(tmp_path / "ledger.db", SIGNER)
    pipeline, _ = _pipeline(tmp_path, ledger, journal.path)
    (event,) = _record(journal, 1)
    assert pipeline.copy_journal(now_ms()).access_entries == 1
    block = pipeline.seal(now_ms())
    assert block is not None
    assert block.tree_size == 1
    assert ledger.log.index_of(event.ledger_key) == 0
    assert pipeline.copy_journal(now_ms()) == BatchResult()  # nothing new
    assert pipeline.seal(now_ms()) is None


def test_no_journal_yet_is_nothing_to_copy_and_is_looked_for_again(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    ledger = Ledger(tmp_path / "ledger.db", SIGNER)
    pipeline, device = _pipeline(tmp_path, ledger, path)
    assert pipeline.copy_journal(now_ms()) == BatchResult()
    result = pipeline.process([_reading(device, 0)], now_ms())
    assert (result.accepted, result.access_entries, result.journal_unreadable) == (1, 0, False)
    assert not path.exists(), "the ingestor never starts a journal of its own"
    (event,) = _record(Journal(path), 1)  # the API starts it
    assert pipeline.copy_journal(now_ms()).access_entries == 1
    assert ledger.log.index_of(event.ledger_key) == 2


def test_an_unreadable_journal_is_counted_and_does_not_stop_readings(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a database" * 100)
    ledger = Ledger(tmp_path / "ledger.db", SIGNER)
    pipeline, device = _pipeline(tmp_path, ledger, path)
    result = pipeline.process([_reading(device, 0)], now_ms())
    assert (result.accepted, result.journal_unreadable) == (1, True)
    assert pipeline.copy_journal(now_ms()).journal_unreadable
    assert _kinds(ledger) == [EntryKind.DEVICE_REGISTERED, EntryKind.READING]


def test_ingestors_sharing_a_log_and_a_journal_log_each_row_once(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Every ingestor of a shared log copies the same journal; a feeder's cursor is not kept
    (only the sequencer's meta is), so the sequencer copies the same rows again: their ledger
    keys make that a duplicate."""
    dsn = postgres.create_database()
    journal = Journal(tmp_path / "journal.db")
    leader, feeder = Ledger(dsn, SIGNER), Ledger(dsn, SIGNER)
    try:
        assert leader.size == 0  # takes the sequencer lock
        leading, _ = _pipeline(tmp_path, leader, journal.path)
        feeding, device = _pipeline(tmp_path, feeder, journal.path)
        events = _record(journal, 3)
        out: list[BatchResult] = []
        thread = threading.Thread(
            target=lambda: out.append(feeding.process([_reading(device, 0)], now_ms()))
        )
        thread.start()
        while thread.is_alive():  # the leader's sequence loop, as the ingestor runs it
            leader.sequence_pending()
            thread.join(0.01)
        (fed,) = out
        assert (fed.accepted, fed.access_entries) == (1, 3)
        assert leader.log.meta(journal.cursor_name) is None  # a feeder's bookmark is dropped
        copied = leading.copy_journal(now_ms())  # the same three rows again
        assert copied.access_entries == 0
        assert leader.log.meta(journal.cursor_name) == 3
        pending = journal.pending(0, now_ms())
        results = leader.append(pending.entries)  # and once more, explicitly
        assert {r.status for r in results} == {AppendStatus.DUPLICATE}
        indexes = [leader.log.index_of(e.ledger_key) or 0 for e in events]
        assert sorted(indexes) == indexes
        assert len(set(indexes)) == 3
        kinds = _kinds(leader)
        assert kinds.count(EntryKind.ACCESS) == 3
        assert kinds.count(EntryKind.READING) == 1
        assert kinds.count(EntryKind.DEVICE_REGISTERED) == 2  # each pipeline's device
    finally:
        feeder.close()
        leader.close()
