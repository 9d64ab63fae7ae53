"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key hash || signature)>``. The key hash is the first four bytes
of SHA-256(name || 0x0A || 0x01 || public key). Verifiers ignore signatures from keys they
do not know, which is what lets witnesses add cosignatures to the same note.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_NOTE_SIZE = 1 << 20
MAX_SIGNATURES = 100


class NoteError(Exception):
    """A note or key that is malformed, or whose signatures do not verify."""


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_hash(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || alg || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def format_vkey(name: str, public_key: bytes, alg: int = ALG_ED25519) -> str:
    """A verifier key as text: ``<name>+<hex key ID>+<base64(alg || key)>``."""
    encoded = base64.b64encode(bytes([alg]) + public_key).decode()
    return f"{name}+{key_hash(name, public_key, alg).hex()}+{encoded}"


def parse_vkey(text: str, alg: int = ALG_ED25519) -> tuple[str, bytes]:
    """``(name, Ed25519 public key)`` of a verifier key of type ``alg``."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<hash>+<base64 key>")
    name, hash_hex, encoded = parts
    _check_name(name)
    raw = _b64decode(encoded, "verifier key")
    if len(raw) != 33 or raw[0] != alg:
        raise NoteError(f"only Ed25519 verifier keys (type 0x{alg:02x}, 32 bytes) are supported")
    if key_hash(name, raw[1:], alg).hex() != hash_hex.lower():
        raise NoteError("the verifier key's hash does not match its name and key")
    return name, raw[1:]


def format_skey(name: str, private_key: Ed25519PrivateKey, alg: int = ALG_ED25519) -> str:
    """A signer key as text: ``PRIVATE+KEY+<name>+<hex key ID>+<base64(alg || seed)>``."""
    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    encoded = base64.b64encode(bytes([alg]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{key_hash(name, public, alg).hex()}+{encoded}"


def parse_skey(text: str, alg: int = ALG_ED25519) -> tuple[str, Ed25519PrivateKey]:
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise NoteError("a signer key is PRIVATE+KEY+<name>+<hash>+<base64 key>")
    _, _, name, hash_hex, encoded = parts
    _check_name(name)
    raw = _b64decode(encoded, "signer key")
    if len(raw) != 33 or raw[0] != alg:
        raise NoteError(f"only Ed25519 signer keys (type 0x{alg:02x}, 32-byte seed) are supported")
    private_key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    if key_hash(name, public, alg).hex() != hash_hex.lower():
        raise NoteError("the signer key's hash does not match its name and key")
    return name, private_key


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise NoteError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class VerifierKey:
    """A pinned public key of signature type ``ALG``, written ``<name>+<hex key ID>+<base64(alg || key)>``."""

    ALG: ClassVar[int] = ALG_ED25519
    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key, self.ALG)

    def __str__(self) -> str:
        return format_vkey(self.name, self.public_key, self.ALG)

    @classmethod
    def parse(cls, text: str) -> Self:
        return cls(*parse_vkey(text, cls.ALG))


@dataclass(frozen=True)
class NoteVerifier(VerifierKey):
    """A log's key (signature type 0x01): it signs checkpoints."""

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """A named Ed25519 private key of signature type ``ALG``, stored as
    ``PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>``."""

    ALG = ALG_ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Self:
        return cls(*parse_skey(text, cls.ALG))

    def __str__(self) -> str:
        return format_skey(self.name, self._key, self.ALG)


class NoteSigner(SigningKey):
    """A log's note-signing key (signature type 0x01)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        super().__init__(name, private_key)
        self.verifier = NoteVerifier(name, self.public_key)

    def signature_line(self, text: str) -> str:
        signature = self._key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_hash + signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def sign_note(text: str, signer: NoteSigner) -> str:
    """A signed note of ``text`` (which must end in a newline)."""
    _check_text(text)
    return text + "\n" + signer.signature_line(text)


@dataclass(frozen=True)
class Signature:
    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]


def parse_note(note: str) -> Note:
    """Split a signed note into text and signatures, without verifying any."""
    if len(note.encode()) > MAX_NOTE_SIZE:
        raise NoteError("note is too large")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, and signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    _check_text(text)
    signatures: list[Signature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("every line after the blank line must be a signature line")
        parts = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise NoteError("a signature line is '— <name> <base64>'")
        name, encoded = parts
        _check_name(name)
        raw = _b64decode(encoded, "signature")
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key hash and the signature bytes")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    return Note(text, tuple(signatures))


def open_note(note: str, verifiers: list[NoteVerifier]) -> tuple[Note, list[NoteVerifier]]:
    """Parse a note and return it with the pinned keys that signed it.

    Raise :class:`NoteError` when a known key's signature is invalid or no known key signed.
    """
    parsed = parse_note(note)
    message = parsed.text.encode()
    signed_by: list[NoteVerifier] = []
    for sig in parsed.signatures:
        for verifier in verifiers:
            if verifier.name == sig.name and verifier.key_hash == sig.key_hash:
                if not verifier.verify(message, sig.signature):
                    raise NoteError(f"the signature of {sig.name} does not verify")
                if verifier not in signed_by:
                    signed_by.append(verifier)
    if not signed_by:
        raise NoteError("no signature from a pinned key")
    return parsed, signed_by


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if "\n\n" in text or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text must not hold blank lines or control characters")
