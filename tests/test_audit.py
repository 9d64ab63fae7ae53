"""The auditor: a clean log passes; a changed reading, block, chain link, tile, key-index row
or cosignature is caught, a rewritten and re-signed history is caught by the witnesses'
cosignatures, and a tampered row of any table is a finding, never an exception."""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path

import psycopg
import pytest

from devices.cose import parse_sign1
from devices.keys import DeviceSigner
from devices.reading import decode_reading
from ledger.appends import EntryKey, NewEntry
from ledger.audit import AuditReport, audit
from ledger.blocks import Block
from ledger.cosignature import CosignatureVerifier, Cosigner
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteVerifier, parse_note
from tests.postgres import Postgres
from tests.stack import now_ms, signed
from vitaltrail.cli import main

ORIGIN = "vitaltrail.local/ledger"
WITNESS = Cosigner.generate("witness.test/w1")


def _build(data_dir: Path, readings: int = 300, location: str | None = None) -> NoteVerifier:
    """Two devices' registrations and readings, sealed in three blocks (across a tile edge),
    each block cosigned by WITNESS; in ``data_dir``, or at ``location`` (PostgreSQL)."""
    signer = load_or_create_signer(data_dir / "keys" / "ledger.key", ORIGIN)
    devices = {f"band-{i}": DeviceSigner.generate() for i in range(2)}
    ledger = Ledger(location or data_dir / "ledger.db", signer)
    ledger.append(
        [
            DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, d, s.key, f"p-{d}").entry(now_ms())
            for d, s in devices.items()
        ]
    )
    for part in range(3):
        ledger.append(
            [
                NewEntry(
                    reading_key(d, seq),
                    LedgerEntry(EntryKind.READING, now_ms(), signed(d, s, seq)).encode(),
                )
                for seq in range(part * readings // 3, (part + 1) * readings // 3)
                for d, s in devices.items()
            ]
        )
        _cosign(ledger, ledger.seal(now_ms()))
    ledger.close()
    return signer.verifier


def _cosign(ledger: Ledger, block: Block | None) -> None:
    assert block is not None
    line = WITNESS.cosign(parse_note(block.note).text)
    ledger.blocks.add_cosignature(block.height, WITNESS.name, line)


def _audit(
    data_dir: Path, key: NoteVerifier, witnesses: tuple[CosignatureVerifier, ...] = ()
) -> AuditReport:
    reader = LedgerReader(data_dir / "ledger.db")
    try:
        return audit(reader, key, witnesses)
    finally:
        reader.close()


def _flip(data_dir: Path, table: str, column: str, where: str, offset: int, mask: int) -> None:
    """Change one stored byte, as someone with write access to the database could."""
    db = sqlite3.connect(data_dir / "ledger.db")
    (blob,) = db.execute(f"SELECT {column} FROM {table} WHERE {where}").fetchone()
    tampered = bytearray(blob)
    tampered[offset] ^= mask
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(tampered),))
    db.commit()
    db.close()


def _sql(data_dir: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(data_dir / "ledger.db")
    db.execute(statement, params)
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NoteVerifier]:
    """The log built once per module; each test tampers with a copy of it."""
    data_dir = tmp_path_factory.mktemp("audit-template")
    return data_dir, _build(data_dir)


@pytest.fixture
def built(template: tuple[Path, NoteVerifier], tmp_path: Path) -> tuple[Path, NoteVerifier]:
    source, key = template
    shutil.copytree(source / "keys", tmp_path / "keys")
    for db_file in source.glob("ledger.db*"):  # the database, and any WAL
        shutil.copyfile(db_file, tmp_path / db_file.name)
    return tmp_path, key


def test_an_untouched_log_passes(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    report = _audit(data_dir, key)
    assert report.ok, report.findings
    assert (report.entries, report.blocks) == (602, 3)
    assert report.tiles == 4  # tiles 0/0 and 0/1 filled, 0/2 and 1/0 at the edge
    assert report.unchecked == {WITNESS.name: 3}  # an unpinned witness: counted, not checked
    witnessed = _audit(data_dir, key, (WITNESS.verifier,))
    assert witnessed.ok, witnessed.findings
    assert (witnessed.cosigned, witnessed.unchecked) == ({WITNESS.name: 3}, {})


def test_a_changed_reading_is_caught_at_its_entry(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    # inside the last entry of page 1 (entry 511): its signed payload
    _flip(data_dir, "entry_pages", "entries", "idx = 1", -70, 0x01)
    report = _audit(data_dir, key)
    first = report.findings[0]
    assert (first.check, first.where) == ("device signature", "entry 511")
    assert {f.check for f in report.findings} >= {"tile", "tree"}  # and nothing matches after


def test_a_changed_block_fails_its_signature(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    db = sqlite3.connect(data_dir / "ledger.db")
    (note,) = db.execute("SELECT note FROM blocks WHERE height = 1").fetchone()
    db.close()
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claims one more entry
    _sql(data_dir, "UPDATE blocks SET note = ? WHERE height = 1", "\n".join(lines))
    first = _audit(data_dir, key).findings[0]
    assert (first.check, first.where) == ("block signature", "block 1")


def test_a_broken_chain_link_is_caught(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    _sql(data_dir, "UPDATE blocks SET prev_hash = ? WHERE height = 2", bytes(32))
    findings = _audit(data_dir, key).findings
    assert [(f.check, f.where) for f in findings] == [("chain", "block 2")]


def test_a_changed_interior_hash_is_caught_in_its_tile(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    _flip(data_dir, "tiles", "hashes", "level = 0 AND idx = 1", 300 * 32, 0xFF)  # a level-1 node
    findings = _audit(data_dir, key).findings
    assert [(f.check, f.where) for f in findings] == [("tile", "tile 0/1")]


def test_another_ledger_key_fails_every_block(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, _ = built
    impostor = load_or_create_signer(data_dir / "other.key", ORIGIN).verifier
    findings = _audit(data_dir, impostor).findings
    assert [(f.check, f.where) for f in findings] == [
        ("block signature", f"block {h}") for h in range(3)
    ]


def test_the_audit_command(
    built: tuple[Path, NoteVerifier], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, key = built
    assert main(["--data-dir", str(data_dir), "audit", "--ledger-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "OK: every entry, tile, ledger key, key-index row, block signature" in out
    assert f"not checked: 3 cosignatures of {WITNESS.name} (pass its --witness-key" in out
    pinned = ["--witness-key", str(WITNESS.verifier)]
    assert main(["--data-dir", str(data_dir), "audit", *pinned]) == 0
    assert f"witness {WITNESS.name}: 3 of 3 blocks carry its cosignature" in capsys.readouterr().out
    assert main(["--data-dir", str(data_dir), "audit", "--witness-key", "junk"]) == 2
    _sql(data_dir, "UPDATE blocks SET prev_hash = ? WHERE height = 1", bytes(32))
    assert main(["--data-dir", str(data_dir), "audit"]) == 1
    out = capsys.readouterr().out
    assert (
        "FIRST INCONSISTENCY: block 1 (chain): prev_hash is not the hash of the block before" in out
    )
    assert main(["--data-dir", str(data_dir / "nowhere"), "audit"]) == 2


def _rewrite_history(data_dir: Path, drop: int) -> None:
    """What a holder of the ledger key can do: rebuild the log without entry ``drop``, seal
    and sign every block again (prev hashes and tiles all consistent), keep the stored
    cosignatures, and put the new database in place of the old one."""
    signer = load_or_create_signer(data_dir / "keys" / "ledger.key", ORIGIN)
    old = LedgerReader(data_dir / "ledger.db")
    entries = [(i, d) for i, d in old.log.entries(0, old.log.stored_size()) if i != drop]
    sizes = [b.tree_size - (b.tree_size > drop) for b in old.blocks.all()]
    cosignatures = old.blocks.cosignature_rows()
    old.close()
    new = Ledger(data_dir / "rewritten.db", signer)
    written = 0
    for size in sizes:
        batch = entries[written:size]
        new.append([NewEntry(_content_key(d), d) for _, d in batch])
        written = size
        new.seal(now_ms())
    for height, witness, line in cosignatures:
        new.blocks.add_cosignature(height, witness, line)
    new.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{data_dir / 'ledger.db'}{suffix}").unlink(missing_ok=True)
    (data_dir / "rewritten.db").rename(data_dir / "ledger.db")


def _content_key(data: bytes) -> EntryKey:
    entry = LedgerEntry.decode(data)
    if entry.kind is EntryKind.READING:
        reading = decode_reading(parse_sign1(entry.body).payload)
        return reading_key(reading.device_id, reading.seq)
    return DeviceKeyStatement.from_entry(entry).entry(0).key


def test_a_rewritten_and_re_signed_history_is_caught_by_the_witness_cosignatures(
    built: tuple[Path, NoteVerifier],
) -> None:
    data_dir, key = built
    _rewrite_history(data_dir, drop=300)  # a reading sealed in block 1 disappears
    assert _audit(data_dir, key).ok  # the ledger key alone cannot tell
    findings = _audit(data_dir, key, (WITNESS.verifier,)).findings
    assert [(f.check, f.where) for f in findings] == [
        ("cosignature", "block 1"),
        ("cosignature", "block 2"),
    ]
    assert "does not verify over this block's checkpoint" in findings[0].detail


def test_each_ledger_key_is_used_once(tmp_path: Path) -> None:
    """A reading logged twice (under a key that is not its own) breaks "one entry per
    (device, seq), ever" even though every signature and hash checks out."""
    signer = load_or_create_signer(tmp_path / "keys" / "ledger.key", ORIGIN)
    device = DeviceSigner.generate()
    ledger = Ledger(tmp_path / "ledger.db", signer)
    ledger.append(
        [DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, "band-0", device.key, "p-0").entry(1)]
    )
    reading = LedgerEntry(EntryKind.READING, now_ms(), signed("band-0", device, 5)).encode()
    ledger.append([NewEntry(reading_key("band-0", 5), reading)])
    ledger.append([NewEntry(reading_key("band-0", 6), reading)])  # the same (device, seq)
    ledger.seal(now_ms())
    ledger.close()
    findings = _audit(tmp_path, signer.verifier).findings
    assert [(f.check, f.where) for f in findings] == [
        ("ledger key", "entry 2"),
        ("key index", "key index row 'reading/band-0'/0"),
    ]
    assert findings[0].detail == "key reading/band-0/5 is entry 1's already"
    assert findings[1].detail == "key reading/band-0/6: entry 2 in the index, free in the log"


def _set_slot(data_dir: Path, group: str, number: int, value: int) -> None:
    db = sqlite3.connect(data_dir / "ledger.db")
    (row,) = db.execute(
        "SELECT slots FROM entry_keys WHERE grp = ? AND blk = ?", (group, number // 16)
    ).fetchone()
    slots = bytearray(row)
    struct.pack_into(">Q", slots, (number % 16) * 8, value)
    db.execute(
        "UPDATE entry_keys SET slots = ? WHERE grp = ? AND blk = ?",
        (bytes(slots), group, number // 16),
    )
    db.commit()
    db.close()


def test_key_index_rows_must_point_at_their_entries(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    _set_slot(data_dir, "reading/band-1", 17, (1 << 63) | 40)  # points at another entry
    extra = bytearray(128)
    struct.pack_into(">Q", extra, 8, (1 << 63) | 7)
    _sql(data_dir, "INSERT INTO entry_keys VALUES ('reading/band-1', 30, ?)", bytes(extra))
    _sql(data_dir, "DELETE FROM entry_keys WHERE grp = 'reading/band-0' AND blk = 3")
    findings = _audit(data_dir, key).findings
    assert [(f.where, f.detail) for f in findings] == [
        (
            "key index row 'reading/band-1'/1",
            "key reading/band-1/17: entry 40 in the index, entry 37 in the log",
        ),
        (
            "key index row 'reading/band-1'/30",
            "key reading/band-1/481: entry 7 in the index, free in the log",
        ),
        (
            "key index row 'reading/band-0'/3",
            "missing: key reading/band-0/48 of entry 98 (and 15 more) not in the index",
        ),
    ]
    assert {f.check for f in findings} == {"key index"}


def test_cosignature_rows_are_checked(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    pinned = (WITNESS.verifier,)
    _sql(data_dir, "UPDATE cosignatures SET line = 'not a signature line' WHERE height = 0")
    _sql(data_dir, "INSERT INTO cosignatures VALUES (7, ?, 'x')", WITNESS.name)  # no block 7
    impostor = Cosigner.generate(WITNESS.name)  # same name, another key
    db = sqlite3.connect(data_dir / "ledger.db")
    (note,) = db.execute("SELECT note FROM blocks WHERE height = 2").fetchone()
    db.close()
    _sql(
        data_dir,
        "UPDATE cosignatures SET line = ? WHERE height = 2",
        impostor.cosign(parse_note(note).text),
    )
    findings = _audit(data_dir, key, pinned).findings
    assert [(f.check, f.where) for f in findings] == [
        ("cosignature", "block 0"),
        ("cosignature", "block 2"),
        ("cosignature", "cosignature row 7/'witness.test/w1'"),
    ]
    assert "is not a signature line" in findings[0].detail
    assert findings[1].detail == f"the cosignature of {WITNESS.name} is not from its pinned key"
    assert findings[2].detail == "no stored block 7"
    # without the witness key, only what needs no key: the malformed line and the orphan
    assert [f.where for f in _audit(data_dir, key).findings] == [
        "block 0",
        "cosignature row 7/'witness.test/w1'",
    ]


def test_an_entry_page_whose_offsets_do_not_match_its_data_is_a_finding(
    built: tuple[Path, NoteVerifier],
) -> None:
    data_dir, key = built
    _flip(data_dir, "entry_pages", "entries", "idx = 1", 2 + 4 * 255 + 3, 0x01)  # the last end
    findings = _audit(data_dir, key).findings
    assert (findings[0].check, findings[0].where) == ("entry page", "entry page 1")
    assert findings[0].detail == (
        "a page's offsets do not match its data; the entries after it are not checked"
    )
    assert len(findings) == 1  # and nothing after it repeats it
    assert main(["--data-dir", str(data_dir), "audit"]) == 1  # a finding, not a traceback


# A tampered row of each table, and the first finding it must give (never an exception).
TAMPERED_ROWS = [
    ("UPDATE entry_pages SET entries = 'text' WHERE idx = 0", "entry page", "entry page 0"),
    ("UPDATE entry_pages SET entries = x'0001' WHERE idx = 1", "entry page", "entry page 1"),
    ("UPDATE entry_pages SET idx = 'x' WHERE idx = 1", "entry page", "entry page 1"),
    ("DELETE FROM entry_pages WHERE idx = 1", "entry page", "entry page 1"),
    ("DELETE FROM entry_pages WHERE idx = 2", "entry page", "entry page 2"),
    ("INSERT INTO entry_pages VALUES (9, x'0000')", "entry page", "entry page 9"),
    ("UPDATE tiles SET hashes = 'text' WHERE level = 0 AND idx = 0", "tile", "tile 0/0"),
    ("UPDATE tiles SET hashes = x'00' WHERE level = 0 AND idx = 1", "tile", "tile 0/1"),
    ("DELETE FROM tiles WHERE level = 1", "tile", "tile 1/0"),
    ("UPDATE log_meta SET value = 'x' WHERE name = 'size'", "entry", "log size"),
    ("UPDATE log_meta SET value = 601 WHERE name = 'size'", "entry page", "entry page 2"),
    ("UPDATE blocks SET height = 'x' WHERE height = 1", "chain", "block 2"),  # then the row
    ("UPDATE blocks SET prev_hash = 'text' WHERE height = 1", "block", "block row 1"),
    ("UPDATE blocks SET note = x'00' WHERE height = 0", "block", "block row 0"),
    ("UPDATE blocks SET tree_size = 1.5 WHERE height = 2", "block", "block row 2"),
    ("UPDATE blocks SET note = 'junk' WHERE height = 2", "block signature", "block 2"),
    ("UPDATE entry_keys SET slots = x'00' WHERE blk = 0", "key index", "key index row"),
    ("UPDATE entry_keys SET blk = 'x' WHERE blk = 1", "key index", "key index row"),
    (
        f"INSERT INTO entry_keys VALUES ('reading/ghost', 0, x'8000000000000007{'0' * 240}')",
        "key index",
        "key index row 'reading/ghost'/0",
    ),
    ("UPDATE cosignatures SET height = 'x' WHERE height = 1", "cosignature", None),
    ("UPDATE cosignatures SET line = x'00' WHERE height = 1", "cosignature", None),
    ("UPDATE cosignatures SET witness = 'w2' WHERE height = 1", "cosignature", "block 1"),
]


@pytest.mark.parametrize(("statement", "check", "where"), TAMPERED_ROWS)
def test_a_tampered_row_of_any_table_is_a_finding(
    built: tuple[Path, NoteVerifier], statement: str, check: str, where: str | None
) -> None:
    data_dir, key = built
    _sql(data_dir, statement)
    findings = _audit(data_dir, key, (WITNESS.verifier,)).findings
    assert findings, statement
    first = findings[0]
    assert first.check == check, findings
    if where is not None:
        assert first.where.startswith(where), findings
    if "blocks SET height = 'x'" in statement:
        assert ("block", "block row 'x'") in [(f.check, f.where) for f in findings]


def test_the_audit_on_postgresql_reads_every_row_in_pages(
    tmp_path: Path, postgres: Postgres
) -> None:
    """The shared log's engine: the rows come a page at a time (keyset pagination), all of
    them, in order; a key-index slot changed there is caught like on SQLite."""
    dsn = postgres.create_database()
    key = _build(tmp_path, location=dsn)
    reader = LedgerReader(dsn)
    try:
        assert [r[0] for r in reader.log.page_rows(batch=2)] == [0, 1, 2]
        rows = list(reader.log.keys.stored_rows(batch=5))
        assert rows == list(reader.log.keys.stored_rows())
        assert len(rows) == 2 + 2 * 19  # two device keys' rows; 300 readings = 19 rows each
        assert audit(reader, key, (WITNESS.verifier,)).ok
    finally:
        reader.close()
    slots = bytearray(128)
    struct.pack_into(">Q", slots, 0, (1 << 63) | 5)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(
            "UPDATE entry_keys SET slots = %s WHERE grp = 'reading/band-0' AND blk = 18",
            (bytes(slots),),
        )
    reader = LedgerReader(dsn)
    try:
        findings = audit(reader, key).findings
    finally:
        reader.close()
    assert [(f.check, f.where) for f in findings] == [
        ("key index", "key index row 'reading/band-0'/18")
    ] * 12  # seqs 288-299: slot 0 points at entry 5, the 11 others are free
