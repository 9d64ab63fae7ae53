"""COSE_Sign1 (RFC 9052) with alg EdDSA (-8): the envelope of every reading on the wire.

Layout: ``18([protected, unprotected, payload, signature])``. The protected header is
``{1: -8, 4: kid}`` in deterministic CBOR; the signature is Ed25519 over the Sig_structure
``["Signature1", protected, h'', payload]``. A kid in the unprotected header is accepted
too (it only selects a key; the signature decides), so messages from other COSE
libraries verify as long as they are tagged, EdDSA, and carry a kid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from devices.cbor_head import bstr
from devices.errors import CoseError, SignatureError
from devices.keys import SIGNATURE_SIZE, DeviceKey, DeviceSigner

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
MAX_KID_SIZE = 64


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


def sign1(signer: DeviceSigner, payload: bytes) -> bytes:
    """Sign ``payload`` as a tagged COSE_Sign1 message."""
    protected = cbor2.dumps({HEADER_ALG: ALG_EDDSA, HEADER_KID: signer.key.kid}, canonical=True)
    signature = signer.sign(_sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def parse_sign1(data: bytes) -> SignedMessage:
    """Parse a COSE_Sign1 message; raise :class:`CoseError` naming what is wrong."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise CoseError(f"not valid CBOR: {exc}") from exc
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise CoseError("not a tagged COSE_Sign1 message (CBOR tag 18)")
    parts = obj.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise CoseError("COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise CoseError("COSE_Sign1 headers must be a byte string and a map")
    if not isinstance(payload, bytes):
        raise CoseError("COSE_Sign1 payload must be attached as a byte string")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise CoseError(f"COSE_Sign1 signature must be {SIGNATURE_SIZE} bytes")
    headers = _protected_headers(protected)
    if headers.get(HEADER_ALG) != ALG_EDDSA or HEADER_ALG in unprotected:
        raise CoseError("the protected header must set alg EdDSA (-8)")
    kid = headers.get(HEADER_KID, unprotected.get(HEADER_KID))
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_SIZE:
        raise CoseError("the message must carry a kid (byte string) naming the device key")
    return SignedMessage(protected, kid, payload, signature)


def _protected_headers(protected: bytes) -> Mapping[Any, Any]:
    if not protected:
        return {}
    try:
        headers = cbor2.loads(protected)
    except Exception as exc:
        raise CoseError(f"protected header is not valid CBOR: {exc}") from exc
    if not isinstance(headers, Mapping):
        raise CoseError("protected header must be a map")
    return headers


_SIG_STRUCTURE_HEAD = b"\x84" + b"\x6aSignature1"  # array(4), text(10)


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    """CBOR of ``["Signature1", protected, h'', payload]`` (RFC 9052 section 4.4)."""
    return _SIG_STRUCTURE_HEAD + bstr(protected) + b"\x40" + bstr(payload)
