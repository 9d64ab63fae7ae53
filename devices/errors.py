"""The error tree of the signed-reading format (drawn in devices/__init__.py)."""


class ReadingError(Exception):
    """A signed message that cannot be accepted as a reading."""


class CoseError(ReadingError):
    """Not the canonical encoding of a COSE_Sign1 message with alg EdDSA and a protected kid."""


class PayloadError(ReadingError):
    """The COSE payload is not a well-formed, deterministically encoded reading."""


class SignatureError(ReadingError):
    """The Ed25519 signature does not verify under the device key."""
