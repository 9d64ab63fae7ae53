"""COSE_Sign1 (RFC 9052) with alg EdDSA (-8): the envelope of every reading on the wire.

A message has exactly one accepted encoding, the deterministic CBOR (RFC 8949 4.2.1) of the
only headers the format allows::

    d2 84                              tag 18, array of 4
       bstr( a2 01 27 04 bstr(kid) )   protected header {1: -8, 4: kid}
       a0                              unprotected header: the empty map
       bstr( payload )                 the reading (see devices.reading)
       58 40 <64 bytes>                Ed25519 over ["Signature1", protected, h'', payload]

with the shortest heads and nothing before or after. A message is its bytes: another encoding
of the same signature (a tag in front, a longer or indefinite length, trailing bytes, an
unsigned header, a duplicate or unknown label, ``crit``) would be a second ledger entry for
one reading, and the first one recorded would turn the device's genuine message into a
sequence conflict. So :func:`parse_sign1` accepts a message only if it is byte for byte the
canonical encoding of what it decodes to; pycose and other libraries produce exactly these
bytes when given ``{alg: EdDSA, kid}`` as the protected header and nothing unprotected.
The acceptance rule is the byte-level reader below; cbor2 only explains a refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from devices.boundary import decoder
from devices.cbor_head import bstr, head
from devices.errors import CoseError, SignatureError
from devices.keys import SIGNATURE_SIZE, DeviceKey, DeviceSigner

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_KID = 4
ALG_EDDSA = -8
MAX_KID_SIZE = 64
MAX_MESSAGE_SIZE = 64 * 1024  # a reading of 64 samples is under 8 KiB

_MESSAGE_HEAD = b"\xd2\x84"  # tag 18, array(4)
_PROTECTED_HEAD = b"\xa2\x01\x27\x04"  # map(2), 1: -8, 4: (the kid follows)
_EMPTY_MAP = b"\xa0"
_SIGNATURE_HEAD = head(2, SIGNATURE_SIZE)


@dataclass(frozen=True)
class SignedMessage:
    """A parsed, not yet verified COSE_Sign1 message."""

    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        return _sig_structure(self.protected, self.payload)

    def verify(self, key: DeviceKey) -> None:
        """Raise :class:`SignatureError` unless ``key`` signed this message."""
        if key.kid != self.kid:
            raise SignatureError("the message kid does not name this device key")
        if not key.verify(self.signature, self.to_be_signed()):
            raise SignatureError("the Ed25519 signature does not verify")


def protected_header(kid: bytes) -> bytes:
    """The one protected header the format allows: ``{1: -8, 4: kid}``, deterministic CBOR."""
    return _PROTECTED_HEAD + bstr(kid)


def encode_sign1(kid: bytes, payload: bytes, signature: bytes) -> bytes:
    """The canonical encoding of a COSE_Sign1 message (the only one :func:`parse_sign1` takes)."""
    return (
        _MESSAGE_HEAD + bstr(protected_header(kid)) + _EMPTY_MAP + bstr(payload) + bstr(signature)
    )


def sign1(signer: DeviceSigner, payload: bytes) -> bytes:
    """Sign ``payload`` as a tagged COSE_Sign1 message."""
    kid = signer.key.kid
    signature = signer.sign(_sig_structure(protected_header(kid), payload))
    return encode_sign1(kid, payload, signature)


@decoder(CoseError, "the COSE_Sign1 message")
def parse_sign1(data: bytes) -> SignedMessage:
    """Parse a canonically encoded COSE_Sign1 message; raise :class:`CoseError` naming what
    is wrong with anything else."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise CoseError(f"a COSE_Sign1 message is at most {MAX_MESSAGE_SIZE} bytes")
    message = _read_canonical(bytes(data))
    if message is None:
        raise CoseError(_why_refused(bytes(data)))
    return message


def _read_canonical(data: bytes) -> SignedMessage | None:
    """The message if ``data`` is exactly the canonical layout, else None."""
    if not data.startswith(_MESSAGE_HEAD):
        return None
    protected, pos = _read_bstr(data, len(_MESSAGE_HEAD))
    if protected is None or not protected.startswith(_PROTECTED_HEAD):
        return None
    kid, end = _read_bstr(protected, len(_PROTECTED_HEAD))
    if kid is None or end != len(protected) or not 0 < len(kid) <= MAX_KID_SIZE:
        return None
    if data[pos : pos + 1] != _EMPTY_MAP:
        return None
    payload, pos = _read_bstr(data, pos + 1)
    if payload is None or data[pos : pos + len(_SIGNATURE_HEAD)] != _SIGNATURE_HEAD:
        return None
    signature, pos = _read_bstr(data, pos)
    if signature is None or pos != len(data):
        return None
    return SignedMessage(protected, kid, payload, signature)


def _read_bstr(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """The definite-length byte string at ``pos`` with the shortest head, and where it ends."""
    if pos >= len(data) or data[pos] >> 5 != 2:
        return None, pos
    info = data[pos] & 0x1F
    if info < 24:
        length, start = info, pos + 1
    elif info <= 27:
        start = pos + 1 + (1 << (info - 24))
        length = int.from_bytes(data[pos + 1 : start], "big")
    else:
        return None, pos  # indefinite length or reserved
    if start > len(data) or head(2, length) != data[pos:start] or start + length > len(data):
        return None, pos
    return data[start : start + length], start + length


def _why_refused(data: bytes) -> str:
    """Why ``data`` is not a canonical COSE_Sign1 message, as precisely as cbor2 can tell."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for malformed input
        return f"not valid CBOR ({type(exc).__name__})"
    if data.startswith(b"\xd9\xd9\xf7"):
        return "tag 55799 in front of the message: only tag 18 is allowed"
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        return "not a tagged COSE_Sign1 message (CBOR tag 18)"
    parts = obj.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        return "COSE_Sign1 must be an array of 4 items"
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        return "COSE_Sign1 headers must be a byte string and a map"
    if not isinstance(payload, bytes):
        return "COSE_Sign1 payload must be attached as a byte string"
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        return f"COSE_Sign1 signature must be {SIGNATURE_SIZE} bytes"
    headers = _decoded_map(protected)
    if headers is None:
        return "the protected header must be a CBOR map"
    if HEADER_CRIT in headers or HEADER_CRIT in unprotected:
        return "crit (label 2) is not allowed: no extension header is understood"
    if set(headers) - {HEADER_ALG, HEADER_KID} or unprotected:
        return "only alg (1) and kid (4) are allowed, both protected; the unprotected map is empty"
    if headers.get(HEADER_ALG) != ALG_EDDSA:
        return "the protected header must set alg EdDSA (-8)"
    kid = headers.get(HEADER_KID)
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_SIZE:
        return f"the protected kid must be 1 to {MAX_KID_SIZE} bytes naming the device key"
    if protected != protected_header(kid):
        return "the protected header is not the deterministic CBOR of {1: -8, 4: kid}"
    canonical = encode_sign1(kid, payload, signature)
    if data.startswith(canonical):
        return f"{len(data) - len(canonical)} bytes after the COSE_Sign1 message"
    return "not the deterministic CBOR encoding (shortest, definite lengths) of the message"


def _decoded_map(encoded: bytes) -> Mapping[Any, Any] | None:
    try:
        headers = cbor2.loads(encoded)
    except Exception:
        return None
    return headers if isinstance(headers, Mapping) else None


_SIG_STRUCTURE_HEAD = b"\x84" + b"\x6aSignature1"  # array(4), text(10)


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    """CBOR of ``["Signature1", protected, h'', payload]`` (RFC 9052 section 4.4)."""
    return _SIG_STRUCTURE_HEAD + bstr(protected) + b"\x40" + bstr(payload)
