"""The ledger: the Merkle log, its chain of signed blocks, and the key that signs them.

:class:`Ledger` is the writer: the log's only one on SQLite; on PostgreSQL, several ingestors
each have one and :mod:`ledger.sequencer` makes one of them the sequencer while the others
feed it. :class:`LedgerReader` is a read-only view for the API and tools, safe to use from
other threads and processes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from ledger.appends import AppendResult, NewEntry
from ledger.blocks import GENESIS_PREV_HASH, Block, BlockStore
from ledger.checkpoint import Checkpoint
from ledger.database import Database
from ledger.entries import same_submission
from ledger.note import NoteSigner, sign_note
from ledger.sequencer import Sequencer
from ledger.storage import MerkleLog
from ledger.tlog_proof import TlogProof

log = logging.getLogger("vitaltrail.ledger")


class Ledger:
    """Appends entries and seals blocks. One instance per log, used from one thread."""

    def __init__(self, location: Path | str, signer: NoteSigner) -> None:
        """``location``: a SQLite file, or a PostgreSQL DSN for a log several ingestors share."""
        self._db = Database.open(location)
        self._signer = signer
        self.log = MerkleLog(self._db, same_submission=same_submission)
        self.blocks = BlockStore(self._db)
        self._latest = self.blocks.latest()
        self._sequencer: Sequencer | None = None
        self._edge_is_current = True
        if self._db.dialect == "postgres":
            assert isinstance(location, str)
            self._sequencer = Sequencer(self._db, location)
            self._edge_is_current = False  # read again on taking the lead

    @property
    def shared(self) -> bool:
        """Several ingestors may append to this log (it is in PostgreSQL)."""
        return self._sequencer is not None

    def _lead(self) -> bool:
        """Whether this ingestor sequences the log now; on taking over, catch up first."""
        if self._sequencer is None:
            return True
        if not self._sequencer.try_lead():
            self._edge_is_current = False  # another ingestor may append before we lead again
            return False
        if not self._edge_is_current:
            self.log.reload()
            self._latest = self.blocks.latest()
            self._edge_is_current = True
        return True

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def size(self) -> int:
        return self.log.size if self._lead() else self.log.stored_size()

    @property
    def sealed_size(self) -> int:
        latest = self._latest if self._lead() else self.blocks.latest()
        return latest.tree_size if latest else 0

    @property
    def latest_block(self) -> Block | None:
        return self._latest

    def append(
        self, entries: Sequence[NewEntry], meta: Mapping[str, int] | None = None
    ) -> Sequence[AppendResult]:
        """Append now (the sequencer), or hand the entries to the sequencer and wait (a feeder,
        whose ``meta`` is dropped: only the sequencer keeps bookmarks)."""
        if self._sequencer is None:
            return self.log.append(entries, meta)
        if self._lead():
            return self._sequence(entries, meta)[1]
        return self._sequencer.submit(entries, lead=self.sequence_pending)

    def sequence_pending(self) -> int:
        """Append what feeders submitted, if this ingestor is the sequencer; how many."""
        if self._sequencer is None or not self._lead():
            return 0
        return self._sequence([], None)[0]

    def _sequence(
        self, own: Sequence[NewEntry], meta: Mapping[str, int] | None
    ) -> tuple[int, Sequence[AppendResult]]:
        """Append the feeders' pending entries, then ``own``: how many were pending, and the
        results of ``own``."""
        assert self._sequencer is not None
        pending, settle = self._sequencer.take_pending()
        results = self.log.append([*pending, *own], meta, also=settle)
        return len(pending), results[len(pending) :]

    def seal(self, now_ms: int) -> Block | None:
        """Sign a checkpoint of everything appended so far, if anything was appended since
        (the sequencer only: a feeder seals nothing)."""
        if not self._lead() or self.log.size == self.sealed_size:
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
        if self._sequencer is not None:
            self._sequencer.close()
        self._db.close()


class LedgerReader:
    """Read-only access to entries, blocks and proofs."""

    def __init__(self, location: Path | str) -> None:
        self._db = Database.open(location, read_only=True)
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
