"""The auditor's check of stored witness cosignatures, block by block.

Each stored row ``(height, witness, line)`` must be well-formed (one C2SP signature line,
named for the witness its row names) and belong to a stored block. A cosignature of a
witness whose key is pinned (``vitaltrail audit --witness-key``) must verify over that
block's checkpoint: a holder of the ledger key who rewrote history and re-signed every block
cannot make the witnesses' old cosignatures verify over the new checkpoints. A cosignature of
a witness that is not pinned cannot be checked; it is counted and listed, not a finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.blocks import Block
from ledger.cosignature import CosignatureVerifier
from ledger.database import StoredRowError, int_column, text_column
from ledger.note import NoteError, parse_note

Problem = tuple[str, str]  # (where, what)


@dataclass
class CosignatureCheck:
    """Stored cosignature rows, grouped by height, checked as the auditor reaches each block."""

    witnesses: Sequence[CosignatureVerifier]
    verified: Counter[str] = field(default_factory=Counter)  # pinned witness -> blocks
    unchecked: Counter[str] = field(default_factory=Counter)  # unpinned witness -> rows
    _rows: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    _malformed: list[Problem] = field(default_factory=list)

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for height, witness, line in rows:
            try:
                key = int_column(height, "height"), text_column(witness, "witness")
                self._rows.setdefault(key[0], []).append((key[1], text_column(line, "line")))
            except StoredRowError as exc:
                self._malformed.append((f"cosignature row {height!r}/{witness!r}", str(exc)))

    def malformed(self) -> list[Problem]:
        """Rows whose columns do not even have their types (reported first)."""
        return self._malformed

    def check(self, block: Block) -> Iterator[Problem]:
        """The problems of the cosignatures stored for ``block``."""
        for witness, line in self._rows.pop(block.height, []):
            where = f"block {block.height}"
            try:
                before = len(parse_note(block.note).signatures)
            except NoteError:
                return  # the block's own signature finding says it
            try:
                signatures = parse_note(block.note + line).signatures
            except NoteError as exc:
                yield where, f"the stored cosignature of {witness} is not a signature line: {exc}"
                continue
            if len(signatures) != before + 1 or signatures[-1].name != witness:
                yield where, f"the stored cosignature of {witness} is not one line signed by it"
                continue
            pinned = [w for w in self.witnesses if w.name == witness]
            if not pinned:
                self.unchecked[witness] += 1
                continue
            try:
                stamp = pinned[0].timestamp(block.note + line)
            except NoteError as exc:
                yield where, f"{exc} over this block's checkpoint"
                continue
            if stamp is None:
                yield where, f"the cosignature of {witness} is not from its pinned key"
                continue
            self.verified[witness] += 1

    def orphans(self) -> Iterator[Problem]:
        """Rows left over once every block was checked: no stored block has their height."""
        for height, rows in sorted(self._rows.items()):
            for witness, _ in rows:
                yield f"cosignature row {height}/{witness!r}", f"no stored block {height}"
