"""The auditor: a clean log passes; a changed reading, block, chain link or tile is caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from devices.keys import DeviceSigner
from ledger.appends import NewEntry
from ledger.audit import AuditReport, audit
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteVerifier
from tests.stack import now_ms, signed
from vitaltrail.cli import main

ORIGIN = "vitaltrail.local/ledger"


def _build(data_dir: Path, readings: int = 300) -> NoteVerifier:
    """Two devices' registrations and readings, sealed in three blocks (across a tile edge)."""
    signer = load_or_create_signer(data_dir / "keys" / "ledger.key", ORIGIN)
    devices = {f"band-{i}": DeviceSigner.generate() for i in range(2)}
    ledger = Ledger(data_dir / "ledger.db", signer)
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
        ledger.seal(now_ms())
    ledger.close()
    return signer.verifier


def _audit(data_dir: Path, key: NoteVerifier) -> AuditReport:
    reader = LedgerReader(data_dir / "ledger.db")
    try:
        return audit(reader, key)
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


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, NoteVerifier]:
    return tmp_path, _build(tmp_path)


def test_an_untouched_log_passes(built: tuple[Path, NoteVerifier]) -> None:
    data_dir, key = built
    report = _audit(data_dir, key)
    assert report.ok, report.findings
    assert (report.entries, report.blocks) == (602, 3)
    assert report.tiles == 4  # tiles 0/0 and 0/1 filled, 0/2 and 1/0 at the edge


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
    assert (
        "OK: every entry, tile, block signature and chain link checks out"
        in capsys.readouterr().out
    )
    _sql(data_dir, "UPDATE blocks SET prev_hash = ? WHERE height = 1", bytes(32))
    assert main(["--data-dir", str(data_dir), "audit"]) == 1
    out = capsys.readouterr().out
    assert (
        "FIRST INCONSISTENCY: block 1 (chain): prev_hash is not the hash of the block before" in out
    )
    assert main(["--data-dir", str(data_dir / "nowhere"), "audit"]) == 2
