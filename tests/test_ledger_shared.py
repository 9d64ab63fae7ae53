"""A log in PostgreSQL shared by several writers: one sequences, the others feed it, and a
feeder takes over when the sequencer goes away."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ledger.appends import AppendResult, AppendStatus, EntryKey, NewEntry
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import Ledger, LedgerReader
from ledger.merkle import hash_leaf, root_of
from ledger.note import NoteSigner
from tests.postgres import Postgres

SIGNER = NoteSigner.generate("test.example/shared")


def _entries(group: str, numbers: range, at: int = 1) -> list[NewEntry]:
    return [
        NewEntry(
            EntryKey(group, n), LedgerEntry(EntryKind.READING, at, f"{group}{n}".encode()).encode()
        )
        for n in numbers
    ]


def _feed(leader: Ledger, feeder: Ledger, entries: list[NewEntry]) -> Sequence[AppendResult]:
    """The feeder appends (blocking, in a thread) while the leader sequences, as its loop would."""
    out: list[Sequence[AppendResult]] = []
    thread = threading.Thread(target=lambda: out.append(feeder.append(entries)))
    thread.start()
    while thread.is_alive():
        leader.sequence_pending()
        thread.join(0.01)
    (results,) = out
    return results


def test_a_feeders_entries_are_appended_by_the_sequencer_in_order(postgres: Postgres) -> None:
    dsn = postgres.create_database()
    leader, feeder = Ledger(dsn, SIGNER), Ledger(dsn, SIGNER)
    try:
        assert leader.append(_entries("a", range(3)))[0].status is AppendStatus.APPENDED
        assert leader.shared
        assert leader.size == 3
        results = _feed(leader, feeder, [*_entries("b", range(4)), *_entries("a", range(1), at=9)])
        assert [(r.status, r.index) for r in results] == [
            *((AppendStatus.APPENDED, i) for i in range(3, 7)),
            (AppendStatus.DUPLICATE, 0),  # a's 0 again, logged at another time: the same reading
        ]
        assert feeder.seal(2) is None  # only the sequencer seals
        block = leader.seal(1)
        assert block is not None
        assert block.tree_size == 7
        assert feeder.size == 7
        assert feeder.sealed_size == 7
    finally:
        feeder.close()
        leader.close()
    reader = LedgerReader(dsn)
    data = [d for _, d in reader.log.entries(0, 7)]
    assert reader.log.root_at(7) == root_of([hash_leaf(d) for d in data])
    assert [LedgerEntry.decode(d).body for d in data] == [
        b"a0",
        b"a1",
        b"a2",
        b"b0",
        b"b1",
        b"b2",
        b"b3",
    ]
    reader.close()


def test_a_feeder_takes_over_when_the_sequencer_is_gone(postgres: Postgres) -> None:
    dsn = postgres.create_database()
    first, second = Ledger(dsn, SIGNER), Ledger(dsn, SIGNER)
    first.append(_entries("a", range(5)))
    first.seal(1)
    first.close()  # the sequencer's session ends: its lock is released
    results = second.append(_entries("b", range(2)))
    assert [(r.status, r.index) for r in results] == [
        (AppendStatus.APPENDED, 5),
        (AppendStatus.APPENDED, 6),
    ]
    block = second.seal(2)
    assert block is not None
    assert (block.height, block.tree_size) == (1, 7)  # the same chain, continued
    second.close()
    reader = LedgerReader(dsn)
    first_block, second_block = reader.blocks.all()
    assert second_block.prev_hash == first_block.hash()
    leaves = [hash_leaf(d) for _, d in reader.log.entries(0, 7)]
    assert second_block.checkpoint.root == root_of(leaves)
    reader.close()


def test_the_sequencer_refuses_a_feeders_entry_whose_unless_key_it_took(postgres: Postgres) -> None:
    dsn = postgres.create_database()
    leader, feeder = Ledger(dsn, SIGNER), Ledger(dsn, SIGNER)
    try:
        revocation = EntryKey("revoked", 1)
        leader.append([NewEntry(revocation, LedgerEntry(EntryKind.READING, 1, b"rev").encode())])
        late = NewEntry(
            EntryKey("r", 0), LedgerEntry(EntryKind.READING, 2, b"r0").encode(), revocation
        )
        results = _feed(leader, feeder, [late])
        assert [(r.status, r.index) for r in results] == [(AppendStatus.REFUSED, 0)]
        assert leader.size == 1
    finally:
        feeder.close()
        leader.close()
