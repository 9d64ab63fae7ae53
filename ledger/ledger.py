"""The ledger: the Merkle log, its chain of signed blocks, and the key that signs them.

:class:`Ledger` is the single writer (the sequencer). :class:`LedgerReader` is a read-only
view for the API and tools, safe to use from other threads and processes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from ledger.appends import AppendResults, NewEntry
from ledger.blocks import GENESIS_PREV_HASH, Block, BlockStore
from ledger.checkpoint import Checkpoint
from ledger.database import Database
from ledger.entries import same_submission
from ledger.note import NoteSigner, sign_note
from ledger.storage import MerkleLog
from ledger.tlog_proof import TlogProof

log = logging.getLogger("vitaltrail.ledger")


class Ledger:
    """Appends entries and seals blocks. One instance per log, used from one thread."""

    def __init__(self, path: Path, signer: NoteSigner) -> None:
        self._db = Database.sqlite(path)
        self._signer = signer
        self.log = MerkleLog(self._db, same_submission=same_submission)
        self.blocks = BlockStore(self._db)
        self._latest = self.blocks.latest()

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def size(self) -> int:
        return self.log.size

    @property
    def sealed_size(self) -> int:
        return self._latest.tree_size if self._latest else 0

    @property
    def latest_block(self) -> Block | None:
        return self._latest

    def append(
        self, entries: Sequence[NewEntry], meta: Mapping[str, int] | None = None
    ) -> AppendResults:
        return self.log.append(entries, meta)

    def seal(self, now_ms: int) -> Block | None:
        """Sign a checkpoint of everything appended so far, if anything was appended since."""
        if self.log.size == self.sealed_size:
            return None
        checkpoint = Checkpoint(self.origin, self.log.size, self.log.root())
        prev = self._latest
        block = Block(
            height=prev.height + 1 if prev else 0,
            tree_size=checkpoint.size,
            note=sign_note(checkpoint.text(), self._signer),
            prev_hash=prev.hash() if prev else GENESIS_PREV_HASH,
            sealed_at_ms=now_ms,
        )
        self.blocks.add(block)
        self._latest = block
        log.debug("sealed block %d (tree size %d)", block.height, block.tree_size)
        return block

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self.log.consistency_proof(old_size, new_size)

    def close(self) -> None:
        self.log.close()
        self._db.close()


class LedgerReader:
    """Read-only access to entries, blocks and proofs."""

    def __init__(self, path: Path) -> None:
        self._db = Database.sqlite(path, read_only=True)
        self.log = MerkleLog(self._db, read_only=True)
        self.blocks = BlockStore(self._db, read_only=True)

    def close(self) -> None:
        self._db.close()

    def tlog_proof(self, index: int, block: Block | None = None) -> TlogProof:
        """An inclusion proof of entry ``index`` against ``block`` (default: the latest)."""
        block = block or self.blocks.latest()
        if block is None or index >= block.tree_size:
            raise LookupError(f"entry {index} is not sealed in a block yet")
        hashes = self.log.inclusion_proof(index, block.tree_size)
        return TlogProof(index, tuple(hashes), self.blocks.cosigned_note(block))
