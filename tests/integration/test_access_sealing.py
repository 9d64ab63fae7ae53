"""An access recorded while no reading flows is in the ledger within a couple of seal
intervals, sealed, with an inclusion proof under the ledger's signed checkpoint: the running
ingestor (on a real Mosquitto) copies the API's journal on its timer; a change to a care team
made then is sealed the same way, after the access it follows. Two ingestors sharing a
PostgreSQL log copy one journal, each row once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from access.care_teams import CareTeamStore
from access.directory import Directory
from access.directory_changes import DirectoryChange, directory_key
from access.journal import Journal
from access.trail import AccessTrail
from access.users import UserStore
from devices.publisher import readings_topic
from ledger.checkpoint import Checkpoint
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader
from ledger.merkle import hash_leaf, verify_inclusion
from ledger.note import NoteVerifier, open_note
from tests.access_helpers import user_read
from tests.postgres import Postgres
from tests.servers import Mosquitto
from tests.stack import (
    RawPublisher,
    register_devices,
    settings_for,
    signed,
    start_ingest,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_an_access_on_a_quiet_ward_is_sealed_with_the_next_block(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str
) -> None:
    settings = settings_for(data_dir, mosquitto.port, topic_root)  # seals every 0.2 s
    ingest = await start_ingest(settings)
    ledger = ingest.runtime.ledger
    try:
        assert (ledger.size, ledger.latest_block) == (0, None)  # nothing flows, nothing sealed
        journal = Journal(settings.access_journal_path)  # the API starts the journal
        trail = AccessTrail(journal)
        teams = CareTeamStore(settings.access_db_path)
        users = UserStore(settings.access_db_path)
        directory = Directory(users, teams, journal, "cli:ops")
        started = time.monotonic()
        event = trail.record(user_read("u-doc-1", "clinician", ("p-17",)))
        directory.create_team("ward")
        reader = LedgerReader(settings.ledger_location)
        change_key = directory_key(journal.journal_id, 2)

        def sealed() -> bool:
            index = reader.log.index_of(change_key)
            block = reader.blocks.latest()
            return index is not None and block is not None and block.tree_size > index

        await wait_until(sealed, 5 * settings.seal_interval_s, "the access sealed")
        took = time.monotonic() - started
        assert took < 2 * settings.seal_interval_s + 0.5, f"sealed after {took:.2f} s"
        index = reader.log.index_of(event.ledger_key)
        assert index is not None
        data = reader.log.entry(index) or b""
        entry = LedgerEntry.decode(data)
        assert (entry.kind, entry.body) == (EntryKind.ACCESS, event.encode())
        proof = reader.tlog_proof(index)
        key = NoteVerifier.parse((data_dir / "keys" / "ledger.pub").read_text())
        note, signed_by = open_note(proof.checkpoint_note, [key])
        assert signed_by == [key]
        checkpoint = Checkpoint.parse(note.text)
        verify_inclusion(hash_leaf(data), index, checkpoint.size, proof.hashes, checkpoint.root)
        assert reader.log.index_of(change_key) == index + 1
        change = LedgerEntry.decode(reader.log.entry(index + 1) or b"")
        assert change.kind is EntryKind.DIRECTORY_CHANGE
        assert DirectoryChange.decode(change.body).change.team == "ward"
        assert ingest.runtime.metrics.sample("vitaltrail_access_entries_copied_total") == 2
        assert ingest.runtime.metrics.sample("vitaltrail_messages_received_total") == 0
        reader.close()
        for part in (users, teams, journal):
            part.close()
    finally:
        await ingest.close()


async def test_two_ingestors_on_a_shared_log_copy_one_journal_once(
    mosquitto: Mosquitto, postgres: Postgres, data_dir: Path, topic_root: str
) -> None:
    """Two ingestors, one PostgreSQL log, one shared subscription, one journal: while readings
    flow through both, every access is logged once, in journal order, and sealed."""
    dsn = postgres.create_database()
    signers = register_devices(data_dir, 2)
    common = {
        "ledger_url": dsn,
        "share_group": "pair",
        "check_workers": 0,
        "registry_file": data_dir / "registry.db",
        "ledger_key_file": data_dir / "keys" / "ledger.key",
        "access_journal_file": data_dir / "access-journal.db",
    }
    nodes = [data_dir.parent / name for name in ("node-a", "node-b")]
    ingests = [
        await start_ingest(settings_for(node, mosquitto.port, topic_root, **common))
        for node in nodes
    ]
    publisher = RawPublisher(mosquitto.port)
    journal = Journal(data_dir / "access-journal.db")
    trail = AccessTrail(journal)
    events = []
    try:
        for seq in range(40):
            for device_id, signer in signers.items():
                publisher.publish(
                    readings_topic(topic_root, device_id), signed(device_id, signer, seq)
                )
            events.append(trail.record(user_read("u-doc-1", "clinician", ("p-17",))))
            await asyncio.sleep(0.02)
        publisher.flush()
        reader = LedgerReader(dsn)
        total = 2 + 2 * 40 + len(events)  # registrations, readings, accesses

        def all_sealed() -> bool:
            block = reader.blocks.latest()
            return block is not None and block.tree_size == total

        await wait_until(all_sealed, 30, "every entry sealed once")
        indexes = [reader.log.index_of(e.ledger_key) for e in events]
        assert None not in indexes
        assert indexes == sorted(indexes, key=lambda i: i or 0), "in journal order"
        kinds = [LedgerEntry.decode(d).kind for _, d in reader.log.entries(0, total)]
        assert kinds.count(EntryKind.ACCESS) == len(events)
        assert kinds.count(EntryKind.READING) == 80
        assert reader.log.stored_size() == total  # nothing twice
        copied = sum(
            i.runtime.metrics.sample("vitaltrail_access_entries_copied_total") for i in ingests
        )
        assert copied == len(events)
        reader.close()
    finally:
        publisher.close()
        journal.close()
        for ingest in ingests:
            await ingest.close()
