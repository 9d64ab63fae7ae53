"""C2SP tlog-cosignature/v1: a witness's timestamped Ed25519 signature on a checkpoint.

A cosignature is one more signature line on the checkpoint's signed note::

    — <witness name> base64(key ID || u64 timestamp || Ed25519 signature)

The key ID is SHA-256(name || 0x0A || 0x04 || public key)[:4]; the signed message is
``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint text. It says: at that
time, this was the largest tree the witness had seen of that log, consistent with every
earlier one. Witness keys are written as vkeys with type 0x04.
"""

from __future__ import annotations

import base64
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from devices.boundary import decoder
from ledger.note import (
    SIGNATURE_PREFIX,
    NoteError,
    SigningKey,
    VerifierKey,
    parse_note,
)

ALG_COSIGNATURE_V1 = 0x04
_TIMESTAMP = struct.Struct(">Q")


def _message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class CosignatureVerifier(VerifierKey):
    """A pinned witness key (signature type 0x04)."""

    ALG = ALG_COSIGNATURE_V1

    @decoder(NoteError, "the cosigned note")
    def timestamp(self, note: str) -> int | None:
        """When this witness cosigned ``note``, or None if it did not (validly)."""
        parsed = parse_note(note)
        for sig in parsed.signatures:
            if sig.name != self.name or sig.key_hash != self.key_hash:
                continue
            if len(sig.signature) != _TIMESTAMP.size + 64:
                raise NoteError(f"the cosignature of {self.name} is not timestamp || signature")
            (stamp,) = _TIMESTAMP.unpack_from(sig.signature)
            try:
                Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                    sig.signature[_TIMESTAMP.size :], _message(parsed.text, stamp)
                )
            except InvalidSignature as exc:
                raise NoteError(f"the cosignature of {self.name} does not verify") from exc
            return int(stamp)
        return None


class Cosigner(SigningKey):
    """A witness's signing key (signature type 0x04)."""

    ALG = ALG_COSIGNATURE_V1

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        super().__init__(name, private_key)
        self.verifier = CosignatureVerifier(name, self.public_key)

    def cosign(self, text: str, timestamp: int | None = None) -> str:
        """The signature line cosigning checkpoint ``text`` (the note body, not its signatures)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        signature = self._key.sign(_message(text, stamp))
        encoded = base64.b64encode(self.verifier.key_hash + _TIMESTAMP.pack(stamp) + signature)
        return f"{SIGNATURE_PREFIX}{self.name} {encoded.decode()}\n"


@decoder(NoteError, "the cosignature lines")
def add_signature_lines(note: str, lines: str) -> str:
    """The note with more signature lines (cosignatures) appended; the text is unchanged."""
    parse_note(note + lines)  # they must be well-formed signature lines
    return note + lines
