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
from dataclasses import dataclass
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.database import Database, blob_column, int_column, text_column
from ledger.note import parse_note

GENESIS_PREV_HASH = bytes(32)

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height      BIGINT PRIMARY KEY,
    tree_size   BIGINT NOT NULL,
    prev_hash   BLOB NOT NULL,
    note        TEXT NOT NULL,
    sealed_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_size ON blocks (tree_size);
CREATE TABLE IF NOT EXISTS cosignatures (
    height      BIGINT NOT NULL,
    witness     TEXT NOT NULL,
    line        TEXT NOT NULL,
    PRIMARY KEY (height, witness)
)
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


_COLUMNS = "height, tree_size, note, prev_hash, sealed_at"


class BlockStore:
    """The blocks table, in the ledger's database."""

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self._db = db
        if not read_only:
            db.script(SCHEMA)

    def add(self, block: Block) -> None:
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (block.height, block.tree_size, block.prev_hash, block.note, block.sealed_at_ms),
            )

    def latest(self) -> Block | None:
        return self._one(f"SELECT {_COLUMNS} FROM blocks ORDER BY height DESC LIMIT 1")

    def get(self, height: int) -> Block | None:
        return self._one(f"SELECT {_COLUMNS} FROM blocks WHERE height = ?", (height,))

    def first_covering(self, index: int) -> Block | None:
        """The earliest block whose tree includes entry ``index``."""
        return self._one(
            f"SELECT {_COLUMNS} FROM blocks WHERE tree_size > ? ORDER BY height LIMIT 1", (index,)
        )

    def add_cosignature(self, height: int, witness: str, line: str) -> None:
        """Keep a witness's cosignature line of block ``height`` (verified by the caller)."""
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO cosignatures VALUES (?, ?, ?) ON CONFLICT (height, witness)"
                " DO UPDATE SET line = excluded.line",
                (height, witness, line),
            )

    def cosigned_note(self, block: Block) -> str:
        """The block's checkpoint with every cosignature gathered for it."""
        rows = self._db.query(
            "SELECT line FROM cosignatures WHERE height = ? ORDER BY witness", (block.height,)
        )
        return block.note + "".join(str(line) for (line,) in rows)

    def witnessed_size(self, witness: str) -> int:
        """The largest tree ``witness`` has cosigned for this log (0: none)."""
        row = self._db.one(
            "SELECT max(b.tree_size) FROM cosignatures c JOIN blocks b ON b.height = c.height"
            " WHERE c.witness = ?",
            (witness,),
        )
        return 0 if row is None or row[0] is None else int(row[0])

    def latest_cosigned(self, at_least: int) -> Block | None:
        """The latest block with ``at_least`` cosignatures (0: the latest block)."""
        if at_least <= 0:
            return self.latest()
        return self._one(
            f"SELECT {_COLUMNS} FROM blocks WHERE height IN (SELECT height FROM cosignatures"
            " GROUP BY height HAVING count(*) >= ?) ORDER BY height DESC LIMIT 1",
            (at_least,),
        )

    def all(self) -> list[Block]:
        return [parse_block_row(row) for row in self.rows()]

    def rows(self) -> list[tuple[Any, ...]]:
        """Every block row as stored, in height order (the auditor parses each with
        :func:`parse_block_row` and reports the ones that do not parse)."""
        return self._db.query(f"SELECT {_COLUMNS} FROM blocks ORDER BY height")

    def cosignature_rows(self) -> list[tuple[Any, ...]]:
        """Every stored cosignature ``(height, witness, line)`` as stored, in height order."""
        return self._db.query(
            "SELECT height, witness, line FROM cosignatures ORDER BY height, witness"
        )

    def _one(self, sql: str, params: tuple[int, ...] = ()) -> Block | None:
        row = self._db.one(sql, params)
        return parse_block_row(row) if row else None


def parse_block_row(row: tuple[Any, ...]) -> Block:
    """A block from its stored row; :class:`~ledger.database.StoredRowError` if a column holds
    what the schema does not allow."""
    height, tree_size, note, prev_hash, sealed_at = row
    return Block(
        int_column(height, "height"),
        int_column(tree_size, "tree_size"),
        text_column(note, "note"),
        blob_column(prev_hash, "prev_hash", len(GENESIS_PREV_HASH)),
        int_column(sealed_at, "sealed_at"),
    )
