"""An access recorded while no reading flows is in the ledger within a couple of seal
intervals, sealed, with an inclusion proof under the ledger's signed checkpoint: the running
ingestor (on a real Mosquitto) copies the API's journal on its timer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from access.journal import Journal
from access.trail import AccessTrail
from ledger.checkpoint import Checkpoint
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader
from ledger.merkle import hash_leaf, verify_inclusion
from ledger.note import NoteVerifier, open_note
from tests.access_helpers import user_read
from tests.servers import Mosquitto
from tests.stack import settings_for, start_ingest, wait_until

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
        started = time.monotonic()
        event = trail.record(user_read("u-doc-1", "clinician", ("p-17",)))
        reader = LedgerReader(settings.ledger_location)

        def sealed() -> bool:
            index = reader.log.index_of(event.ledger_key)
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
        assert ingest.runtime.metrics.sample("vitaltrail_access_entries_copied_total") == 1
        assert ingest.runtime.metrics.sample("vitaltrail_messages_received_total") == 0
        reader.close()
        journal.close()
    finally:
        await ingest.close()
