"""Ed25519 device keys and their key id.

The key id (COSE ``kid``) is the RFC 9679 COSE Key Thumbprint: SHA-256 over the
deterministic CBOR of the required OKP parameters ``{1: 1, -1: 6, -2: x}``. Any COSE
library can compute it from the public key alone, so the kid names the key, not a database row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def key_id(public_key: bytes) -> bytes:
    """RFC 9679 thumbprint of an Ed25519 public key (32 bytes)."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    cose_key = cbor2.dumps({1: 1, -1: 6, -2: public_key}, canonical=True)
    return hashlib.sha256(cose_key).digest()


@dataclass(frozen=True)
class DeviceKey:
    """A device's public key: what the registry stores and what verifiers pin."""

    public_bytes: bytes

    def __post_init__(self) -> None:
        if len(self.public_bytes) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")

    @cached_property
    def kid(self) -> bytes:
        return key_id(self.public_bytes)

    @cached_property
    def _verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_bytes)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is a valid Ed25519 signature of ``message``.

        libsodium (PyNaCl) verifies about twice as fast as ``cryptography`` here, and this is
        the ingestor's hot path; see docs/decisions.md.
        """
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._verify_key.verify(message, signature)
        except BadSignatureError:
            return False
        return True


class DeviceSigner:
    """A device's private key. Lives on the device (or in the simulator), never on the server."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.key = DeviceKey(
            private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> DeviceSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceSigner:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def save(self, path: Path) -> None:
        """Write the key as PKCS#8 PEM, readable by the owner only."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_bytes(pem)

    @classmethod
    def load(cls, path: Path) -> DeviceSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)


def public_key_from_pem(pem: bytes) -> DeviceKey:
    """Read a SubjectPublicKeyInfo PEM (what a device maker hands over at registration)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return DeviceKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_key_to_pem(key: DeviceKey) -> bytes:
    return Ed25519PublicKey.from_public_bytes(key.public_bytes).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
