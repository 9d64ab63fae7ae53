"""RFC 9162 hashing and proofs: conformance vectors, and proofs from storage against the definition."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.appends import AppendStatus, EntryKey, NewEntry
from ledger.database import Database
from ledger.merkle import (
    EMPTY_ROOT,
    VerificationError,
    hash_leaf,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from ledger.storage import MerkleLog

VECTORS = Path(__file__).parent / "vectors" / "rfc9162"


def _load(kind: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 20, f"conformance vectors for {kind} are missing"
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


@pytest.mark.parametrize(
    ("name", "vector"), _load("inclusion"), ids=lambda v: v if isinstance(v, str) else ""
)
def test_inclusion_vectors(name: str, vector: dict[str, Any]) -> None:
    args = (
        _b64(vector["leafHash"]),
        vector["leafIdx"],
        vector["treeSize"],
        [_b64(p) for p in vector["proof"] or []],
        _b64(vector["root"]),
    )
    if vector["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize(
    ("name", "vector"), _load("consistency"), ids=lambda v: v if isinstance(v, str) else ""
)
def test_consistency_vectors(name: str, vector: dict[str, Any]) -> None:
    args = (
        vector["size1"],
        vector["size2"],
        _b64(vector["root1"]),
        _b64(vector["root2"]),
        [_b64(p) for p in vector["proof"] or []],
    )
    if vector["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def _log_with(db: Database, n: int) -> tuple[MerkleLog, list[bytes]]:
    log = MerkleLog(db)
    data = [f"entry {i}".encode() for i in range(n)]
    for start in range(0, n, 7):  # appends in uneven batches
        chunk = data[start : start + 7]
        log.append([NewEntry(EntryKey("k", start + i), d) for i, d in enumerate(chunk)])
    return log, [hash_leaf(d) for d in data]


def test_roots_from_storage_match_the_definition_at_every_size(ledger_db: Database) -> None:
    log, leaves = _log_with(ledger_db, 70)
    assert log.root() == root_of(leaves)
    assert log.root_at(0) == EMPTY_ROOT
    for size in range(1, 71):
        assert log.root_at(size) == root_of(leaves[:size])


def test_every_inclusion_proof_from_storage_verifies(ledger_db: Database) -> None:
    log, leaves = _log_with(ledger_db, 37)
    for size in range(1, 38):
        root = root_of(leaves[:size])
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            verify_inclusion(leaves[index], index, size, proof, root)
            if proof:
                tampered = [bytes(32), *proof[1:]]
                with pytest.raises(VerificationError):
                    verify_inclusion(leaves[index], index, size, tampered, root)


def test_every_consistency_proof_from_storage_verifies(ledger_db: Database) -> None:
    log, leaves = _log_with(ledger_db, 33)
    assert log.consistency_proof(0, 5) == []
    for new in range(1, 34):
        for old in range(1, new + 1):
            proof = log.consistency_proof(old, new)
            verify_consistency(old, new, root_of(leaves[:old]), root_of(leaves[:new]), proof)
            if 0 < old < new:
                with pytest.raises(VerificationError):
                    verify_consistency(
                        old,
                        new,
                        root_of([*leaves[: old - 1], bytes(32)]),
                        root_of(leaves[:new]),
                        proof,
                    )


def _same_body(a: bytes, b: bytes) -> bool:
    """Like ledger entries: the same submission logged at another time is the same."""
    return a.split(b"@")[0] == b.split(b"@")[0]


def test_append_reports_duplicates_and_conflicts_and_keeps_the_log_unchanged(
    ledger_db: Database,
) -> None:
    log = MerkleLog(ledger_db, same_submission=_same_body)
    first = log.append([NewEntry(EntryKey("a", 0), b"A@1"), NewEntry(EntryKey("b", 0), b"B@1")])
    assert [r.status for r in first] == [AppendStatus.APPENDED] * 2
    root = log.root()
    again = log.append(
        [
            NewEntry(EntryKey("a", 0), b"A@2"),  # redelivered later
            NewEntry(EntryKey("b", 0), b"B2@2"),  # other bytes under a taken key
            NewEntry(EntryKey("a", 0), b"A@3"),
        ]
    )
    assert [(r.status, r.index) for r in again] == [
        (AppendStatus.DUPLICATE, 0),
        (AppendStatus.CONFLICT, 1),
        (AppendStatus.DUPLICATE, 0),
    ]
    assert log.size == 2
    assert log.root() == root


def test_a_key_taken_earlier_in_the_same_batch_is_judged_against_that_entry(
    ledger_db: Database,
) -> None:
    log = MerkleLog(ledger_db, same_submission=_same_body)
    log.append([NewEntry(EntryKey("a", 0), b"A@1")])
    results = log.append(
        [
            NewEntry(EntryKey("c", 5), b"C@1"),
            NewEntry(EntryKey("a", 0), b"A@2"),
            NewEntry(EntryKey("d", 7), b"D@1"),
            NewEntry(EntryKey("d", 7), b"D@2"),
            NewEntry(EntryKey("c", 5), b"X@1"),
        ]
    )
    assert [(r.status, r.index) for r in results] == [
        (AppendStatus.APPENDED, 1),
        (AppendStatus.DUPLICATE, 0),
        (AppendStatus.APPENDED, 2),
        (AppendStatus.DUPLICATE, 2),
        (AppendStatus.CONFLICT, 1),
    ]
    assert (results.appended, log.size) == (2, 3)
    assert log.index_of(EntryKey("d", 7)) == 2


def test_a_reopened_log_continues_the_same_tree(ledger_db: Database) -> None:
    db = ledger_db
    log = MerkleLog(db)
    log.append([NewEntry(EntryKey("k", i), bytes([i])) for i in range(13)])
    reopened = MerkleLog(db)
    assert (reopened.size, reopened.root()) == (13, log.root())
    reopened.append([NewEntry(EntryKey("k", 13), bytes([13]))])
    assert reopened.root() == root_of([hash_leaf(bytes([i])) for i in range(14)])


def test_proofs_cross_tile_boundaries_at_every_level(ledger_db: Database) -> None:
    """Sizes around 256 and 65,536 leaves, where tiles of the next level begin."""
    n = 65_536 + 300
    log = MerkleLog(ledger_db)
    data = [i.to_bytes(4, "big") for i in range(n)]
    leaves = [hash_leaf(d) for d in data]
    for start in range(0, n, 4093):  # batches that end inside tiles, never on a boundary
        chunk = range(start, min(n, start + 4093))
        log.append([NewEntry(EntryKey("k", i), data[i]) for i in chunk])
    roots = {size: root_of(leaves[:size]) for size in (255, 256, 257, 511, 65_535, 65_536, n)}
    assert log.root() == roots[n]
    for size, root in roots.items():
        assert log.root_at(size) == root
        for index in sorted({0, 1, 254, 255, size // 2, size - 1}):
            if index < size:
                verify_inclusion(leaves[index], index, size, log.inclusion_proof(index, size), root)
    for old, new in [(255, 257), (256, 65_536), (257, 65_535), (65_535, n), (1, n)]:
        verify_consistency(
            old,
            new,
            roots.get(old) or root_of(leaves[:old]),
            roots[new],
            log.consistency_proof(old, new),
        )


def test_ledger_entries_encode_deterministically_and_round_trip() -> None:
    import cbor2

    from ledger.entries import EntryError, EntryKind, LedgerEntry

    for body in [b"", b"a" * 30, b"b" * 5000]:
        entry = LedgerEntry(EntryKind.READING, 1_763_700_000_123, body)
        assert entry.encode() == cbor2.dumps([1, 1_763_700_000_123, body], canonical=True)
        assert LedgerEntry.decode(entry.encode()) == entry
    for bad in [
        b"",
        b"\x80",
        cbor2.dumps([99, 1, b""]),
        cbor2.dumps([1, -1, b""]),
        cbor2.dumps([1, 1, "text"]),
    ]:
        with pytest.raises(EntryError):
            LedgerEntry.decode(bad)


def test_entries_read_back_across_pages_and_reopens(ledger_db: Database) -> None:
    db = ledger_db
    data = [f"entry {i}".encode() * (i % 5) for i in range(700)]
    log = MerkleLog(db)
    for start in range(0, 300, 77):
        chunk = range(start, min(300, start + 77))
        log.append([NewEntry(EntryKey("k", i), data[i]) for i in chunk])
    log = MerkleLog(db)  # reopened mid-page, mid-tile
    log.append([NewEntry(EntryKey("k", i), data[i]) for i in range(300, 700)])
    assert log.root() == root_of([hash_leaf(d) for d in data])
    assert [log.entry(i) for i in (0, 255, 256, 299, 300, 699)] == [
        data[i] for i in (0, 255, 256, 299, 300, 699)
    ]
    assert log.entry(700) is None
    assert list(log.entries(250, 520)) == [(i, data[i]) for i in range(250, 520)]
    assert log.index_of(EntryKey("k", 512)) == 512
    assert log.index_of(EntryKey("k", 700)) is None


def test_an_entry_is_refused_once_its_unless_key_is_taken(ledger_db: Database) -> None:
    log = MerkleLog(ledger_db)
    revoked = EntryKey("revoked", 7)
    results = log.append(
        [
            NewEntry(EntryKey("r", 0), b"before", revoked),
            NewEntry(revoked, b"the revocation"),
            NewEntry(EntryKey("r", 1), b"after, same batch", revoked),
        ]
    )
    assert [(r.status, r.index) for r in results] == [
        (AppendStatus.APPENDED, 0),
        (AppendStatus.APPENDED, 1),
        (AppendStatus.REFUSED, 1),  # the index of the entry that blocks it
    ]
    later = log.append(
        [NewEntry(EntryKey("r", 2), b"after", revoked), NewEntry(EntryKey("r", 3), b"x")]
    )
    assert [(r.status, r.index) for r in later] == [
        (AppendStatus.REFUSED, 1),
        (AppendStatus.APPENDED, 2),
    ]
    assert log.size == 3
    assert log.index_of(EntryKey("r", 1)) is None  # a refused entry takes no key


def test_a_reader_sees_keys_the_writer_takes_after_it_looked(tmp_path: Path) -> None:
    """A long-lived reader (the API's) must not answer from a row it read before a write."""
    writer = MerkleLog(Database.sqlite(tmp_path / "l.db"))
    reader = MerkleLog(Database.sqlite(tmp_path / "l.db", read_only=True), read_only=True)
    writer.append([NewEntry(EntryKey("device-key/ab", 0), b"registered")])
    assert reader.index_of(EntryKey("device-key/ab", 0)) == 0
    assert reader.index_of(EntryKey("device-key/ab", 1)) is None  # same row: read once
    writer.append([NewEntry(EntryKey("device-key/ab", 1), b"revoked")])
    assert reader.index_of(EntryKey("device-key/ab", 1)) == 1
