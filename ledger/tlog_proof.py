"""C2SP tlog-proof (c2sp.org/tlog-proof@v1): index, inclusion proof and checkpoint, as text."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Self

from devices.boundary import decoder
from ledger.merkle import HASH_SIZE

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")
MAX_INDEX = 2**64 - 1
MAX_HASHES = 64  # an inclusion proof in a tree of 2**64 leaves has at most 64 hashes


class ProofFormatError(Exception):
    """Text that is not a well-formed tlog-proof."""


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    @classmethod
    @decoder(ProofFormatError, "the tlog-proof")
    def parse(cls, text: str) -> Self:
        """Parse tlog-proof text; raise :class:`ProofFormatError` for anything else."""
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise ProofFormatError(
                "a tlog-proof is header lines, a blank line, then the checkpoint"
            )
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise ProofFormatError(f"a tlog-proof starts with {HEADER!r}")
        pos, extra = 1, None
        if len(lines) > 1 and lines[1].startswith("extra "):
            extra = _b64(lines[1][len("extra ") :], "extra data")
            pos = 2
        if len(lines) <= pos or (match := _INDEX.fullmatch(lines[pos])) is None:
            raise ProofFormatError("expected a line 'index <n>'")
        index = int(match.group(1))
        if index > MAX_INDEX:
            raise ProofFormatError("the index is a 64-bit unsigned integer")
        if len(lines) - pos - 1 > MAX_HASHES:
            raise ProofFormatError(f"an inclusion proof has at most {MAX_HASHES} hashes")
        hashes = tuple(_b64(line, "proof hash") for line in lines[pos + 1 :])
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ProofFormatError(f"each proof hash is {HASH_SIZE} bytes")
        return cls(index, hashes, note, extra)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise ProofFormatError(f"{what} is not valid base64") from exc
