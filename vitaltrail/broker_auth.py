"""What a real deployment's Mosquitto needs for its passwords (its TLS certificate comes from
vitaltrail.certificates).

Generated at first run into the deployment's volumes (never into the repository): passwords
hashed the way Mosquitto 2 hashes them (PBKDF2-SHA512, a 12-byte salt, 101 iterations:
``mosquitto_passwd``'s and the dynamic-security plugin's defaults). The passwords are 192-bit random tokens, so the
iteration count is not what keeps them safe.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

PBKDF2_ITERATIONS = 101  # Mosquitto 2's default
SALT_BYTES = 12  # Mosquitto 2's SALT_LEN: the dynamic-security plugin refuses any other length


@dataclass(frozen=True)
class PasswordHash:
    """A password as Mosquitto stores it: never the password itself."""

    salt: bytes
    digest: bytes
    iterations: int = PBKDF2_ITERATIONS

    @classmethod
    def of(cls, password: str, salt: bytes | None = None) -> PasswordHash:
        salt = salt or secrets.token_bytes(SALT_BYTES)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
        return cls(salt, digest)

    def matches(self, password: str) -> bool:
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), self.salt, self.iterations)
        return secrets.compare_digest(digest, self.digest)

    def dynsec_fields(self) -> dict[str, str | int]:
        """The ``password``, ``salt`` and ``iterations`` of a dynamic-security client."""
        return {
            "password": base64.b64encode(self.digest).decode(),
            "salt": base64.b64encode(self.salt).decode(),
            "iterations": self.iterations,
        }


def new_password() -> str:
    return secrets.token_urlsafe(24)
