"""Blocks: signed checkpoints chained by hash.

A block is a C2SP checkpoint signed as a C2SP signed note, plus the hash of the previous
block. The checkpoint has no extension lines (tlog-checkpoint advises against them, and
witness cosignatures do not cover them), so the link to the previous block lives beside the
note and is committed by the block hash::

    block_hash = SHA-256("vitaltrail-block/v1\\n" || height "\\n" || base64(prev_hash) "\\n" || note)

The first block's ``prev_hash`` is 32 zero bytes. The chain lets an auditor walk the
history block by block; what makes the history unforgeable is the signed checkpoints and
the consistency between them.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint
from ledger.note import parse_note

GENESIS_PREV_HASH = bytes(32)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height      INTEGER PRIMARY KEY,
    tree_size   INTEGER NOT NULL,
    prev_hash   BLOB NOT NULL,
    note        TEXT NOT NULL,
    sealed_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_size ON blocks (tree_size);
"""


@dataclass(frozen=True)
class Block:
    height: int
    tree_size: int
    note: str  # the signed checkpoint
    prev_hash: bytes
    sealed_at_ms: int

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.parse(parse_note(self.note).text)

    def hash(self) -> bytes:
        header = (
            f"vitaltrail-block/v1\n{self.height}\n{base64.b64encode(self.prev_hash).decode()}\n"
        )
        return hashlib.sha256(header.encode() + self.note.encode()).digest()


class BlockStore:
    """The blocks table, in the ledger's database."""

    def __init__(self, db: sqlite3.Connection, *, read_only: bool = False) -> None:
        self._db = db
        if not read_only:
            db.executescript(_SCHEMA)

    def add(self, block: Block) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (block.height, block.tree_size, block.prev_hash, block.note, block.sealed_at_ms),
            )

    def latest(self) -> Block | None:
        row = self._db.execute(
            "SELECT height, tree_size, note, prev_hash, sealed_at FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return _block(row) if row else None

    def get(self, height: int) -> Block | None:
        row = self._db.execute(
            "SELECT height, tree_size, note, prev_hash, sealed_at FROM blocks WHERE height = ?",
            (height,),
        ).fetchone()
        return _block(row) if row else None

    def first_covering(self, index: int) -> Block | None:
        """The earliest block whose tree includes entry ``index``."""
        row = self._db.execute(
            "SELECT height, tree_size, note, prev_hash, sealed_at FROM blocks WHERE tree_size > ?"
            " ORDER BY height LIMIT 1",
            (index,),
        ).fetchone()
        return _block(row) if row else None


def _block(row: tuple[int, int, str, bytes, int]) -> Block:
    height, tree_size, note, prev_hash, sealed_at = row
    return Block(height, tree_size, note, bytes(prev_hash), sealed_at)
