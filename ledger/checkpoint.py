"""C2SP tlog-checkpoint: the note text naming a tree head (origin, size, root)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Self

from ledger.merkle import HASH_SIZE

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


class CheckpointError(Exception):
    """Note text that is not a well-formed checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse checkpoint note text; extension lines are allowed and ignored."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not all(lines):
            raise CheckpointError("a checkpoint is origin, tree size and root hash, one per line")
        origin, size, root = lines[:3]
        if _SIZE.fullmatch(size) is None:
            raise CheckpointError(f"tree size {size!r} is not a decimal without leading zeroes")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except ValueError as exc:  # binascii.Error, or text that is not ASCII
            raise CheckpointError("root hash is not valid base64") from exc
        if len(root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        return cls(origin, int(size), root_hash)
