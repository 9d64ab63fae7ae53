"""The journal's records reach a real ledger the way the ingestor copies device key events:
pending rows after the ledger's cursor, appended with the cursor in one transaction.

Shown here against ledger.Ledger: the entries land under their keys, a redelivery is a
duplicate, the order of a consent and the accesses it allowed is provable by index (with an
inclusion proof of the access in the next block), and a journal made anew keeps its own keys
and cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from access.consent import ConsentStatement, sign_consent
from access.consent_store import ConsentStore
from access.journal import Journal, Pending
from access.patient_keys import PatientKeyStatement, patient_key_entry_key
from access.trail import AccessEvent, AccessTrail
from ledger.appends import AppendResult, AppendStatus
from ledger.entries import EntryKind, LedgerEntry
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.merkle import hash_leaf, verify_inclusion
from tests.access_helpers import DAY, NOW, PATIENT_KEY, app_read, journal, signed_grant


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    signer = load_or_create_signer(tmp_path / "ledger.key", "test.example/ledger")
    ledger = Ledger(tmp_path / "ledger.db", signer)
    yield ledger
    ledger.close()


def copy(ledger: Ledger, j: Journal, now_ms: int) -> tuple[Pending, Sequence[AppendResult]]:
    """What the ingestor does before each batch of readings (ingest/pipeline.py)."""
    pending = j.pending(ledger.log.meta(j.cursor_name) or 0, now_ms)
    return pending, ledger.append(pending.entries, meta=pending.meta)


def kinds(ledger: Ledger) -> list[EntryKind]:
    return [LedgerEntry.decode(d).kind for _, d in ledger.log.entries(0, ledger.size)]


def test_consent_then_access_land_in_order_and_once(ledger: Ledger, tmp_path: Path) -> None:
    j = journal(tmp_path)
    consents = ConsentStore(j)
    trail = AccessTrail(j, consents)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    read = trail.record(app_read())

    _pending, results = copy(ledger, j, NOW)
    assert [r.status for r in results] == [AppendStatus.APPENDED] * 3
    assert kinds(ledger) == [
        EntryKind.PATIENT_KEY_REGISTERED,
        EntryKind.CONSENT_SIGNED,
        EntryKind.ACCESS,
    ]
    assert ledger.log.meta(j.cursor_name) == 3
    key_index = ledger.log.index_of(patient_key_entry_key(PATIENT_KEY.key.kid, 0))
    grant_index = ledger.log.index_of(signed_grant().statement.ledger_key)
    access_index = ledger.log.index_of(read.ledger_key)
    assert key_index is not None
    assert grant_index is not None
    assert access_index is not None
    assert key_index < grant_index < access_index  # the order the journal committed them in
    recorded = LedgerEntry.decode(ledger.log.entry(access_index) or b"")
    assert AccessEvent.decode(recorded.body) == read
    assert (
        PatientKeyStatement.from_entry(
            LedgerEntry.decode(ledger.log.entry(key_index) or b"")
        ).patient_id
        == "p-17"
    )

    # Nothing new: nothing to copy, the cursor stays.
    again, results = copy(ledger, j, NOW + 1)
    assert again.entries == []
    assert again.meta == {}
    assert list(results) == []

    # A redelivery (the same rows, from a feeder that lost the cursor) is a duplicate.
    redelivered = j.pending(0, NOW + 2)
    results = ledger.append(redelivered.entries)
    assert [r.status for r in results] == [AppendStatus.DUPLICATE] * 3
    assert [r.index for r in results] == [key_index, grant_index, access_index]
    assert ledger.size == 3

    # Sealed with the next block: the access has an inclusion proof like any reading.
    block = ledger.seal(NOW + 3)
    assert block is not None
    reader = LedgerReader(tmp_path / "ledger.db")
    try:
        proof = reader.tlog_proof(access_index)
        verify_inclusion(
            hash_leaf(reader.log.entry(access_index) or b""),
            access_index,
            block.tree_size,
            proof.hashes,
            block.checkpoint.root,
        )
    finally:
        reader.close()


def test_a_withdrawal_lands_between_the_accesses_it_separates(
    ledger: Ledger, tmp_path: Path
) -> None:
    j = journal(tmp_path)
    consents = ConsentStore(j)
    trail = AccessTrail(j, consents)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    before = trail.record(app_read())
    copy(ledger, j, NOW)  # one batch ...
    end = ConsentStatement.withdrawal("p-17", 1, NOW, ends=0)
    consents.record_signed(sign_consent(PATIENT_KEY, end).message, NOW)
    after = trail.record(app_read(outcome="deny", reason="no-consent", consents=[]))
    copy(ledger, j, NOW + 1)  # ... and the next
    index = ledger.log.index_of
    assert index(before.ledger_key) < index(end.ledger_key) < index(after.ledger_key)  # type: ignore[operator]


def test_a_journal_made_anew_keeps_its_own_keys_and_cursor(ledger: Ledger, tmp_path: Path) -> None:
    old = journal(tmp_path, "old.sqlite")
    first = AccessTrail(old).record(app_read(consents=[]))
    copy(ledger, old, NOW)
    new = journal(tmp_path, "new.sqlite")  # the old file was lost
    assert new.journal_id != old.journal_id
    assert new.cursor_name != old.cursor_name
    second = AccessTrail(new).record(app_read(consents=[]))
    assert second.seq == first.seq == 1
    _, results = copy(ledger, new, NOW + 1)
    assert [r.status for r in results] == [AppendStatus.APPENDED]
    assert ledger.log.meta(old.cursor_name) == 1
    assert ledger.log.meta(new.cursor_name) == 1


def test_pending_is_paged(ledger: Ledger, tmp_path: Path) -> None:
    j = journal(tmp_path)
    trail = AccessTrail(j)
    events = [trail.record(app_read(consents=[])) for _ in range(5)]
    cursor = 0
    for _ in range(3):
        pending = j.pending(cursor, NOW, limit=2)
        ledger.append(pending.entries, meta=pending.meta)
        cursor = pending.cursor
    assert cursor == 5
    assert [ledger.log.index_of(e.ledger_key) for e in events] == [0, 1, 2, 3, 4]


def test_the_auditor_checks_the_read_sides_entries_by_their_owners_key_rules(
    ledger: Ledger, tmp_path: Path
) -> None:
    from access.entry_keys import KEY_RULES
    from ledger.audit import audit

    j = journal(tmp_path)
    consents = ConsentStore(j)
    consents.keys.register("p-17", PATIENT_KEY.key, NOW - 2 * DAY)
    consents.record_signed(signed_grant().message, NOW - DAY)
    AccessTrail(j, consents).record(app_read())
    copy(ledger, j, NOW)
    ledger.seal(NOW)
    signer = load_or_create_signer(tmp_path / "ledger.key", "test.example/ledger")
    reader = LedgerReader(tmp_path / "ledger.db")
    try:
        with_rules = audit(reader, signer.verifier, key_rules=KEY_RULES)
        without = audit(reader, signer.verifier)
    finally:
        reader.close()
    assert with_rules.findings == []
    assert with_rules.unkeyed == {}
    assert without.findings == [], "kinds it cannot read are counted, not reported"
    assert without.unkeyed == {"patient_key_registered": 1, "consent_signed": 1, "access": 1}
