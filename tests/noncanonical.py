"""Non-canonical envelopes of a genuine COSE_Sign1 message, each still carrying a valid signature.

``copies`` are what anyone holding the genuine message can make (the signature does not cover
the envelope or the unprotected header); ``resigned`` are non-canonical protected headers the
device's own key signed. :func:`signature_holds` checks the signature the lenient way (any CBOR
encoding), which is what the old parser did: only canonicality can refuse these messages.
"""

from __future__ import annotations

import cbor2

from devices.cbor_head import bstr
from devices.cose import _sig_structure, parse_sign1
from devices.keys import DeviceKey, DeviceSigner


def _envelope(protected: bytes, unprotected: bytes, payload: bytes, signature: bytes) -> bytes:
    return b"\xd2\x84" + bstr(protected) + unprotected + bstr(payload) + bstr(signature)


def _long_bstr(data: bytes) -> bytes:
    """A byte string with a 4-byte length head: well-formed, not the shortest."""
    return b"\x5a" + len(data).to_bytes(4, "big") + data


def copies(genuine: bytes) -> dict[str, bytes]:
    """Re-encodings of ``genuine`` that keep its signature valid, made without any key."""
    m = parse_sign1(genuine)
    prot, kid, payload, sig = m.protected, m.kid, m.payload, m.signature
    half = len(payload) // 2
    return {
        "trailing bytes": genuine + b"\x00",
        "tag 55799 in front": b"\xd9\xd9\xf7" + genuine,
        "indefinite-length array": b"\xd2\x9f"
        + bstr(prot)
        + b"\xa0"
        + bstr(payload)
        + bstr(sig)
        + b"\xff",
        "indefinite-length payload": b"\xd2\x84"
        + bstr(prot)
        + b"\xa0"
        + b"\x5f"
        + bstr(payload[:half])
        + bstr(payload[half:])
        + b"\xff"
        + bstr(sig),
        "indefinite-length unprotected map": _envelope(prot, b"\xbf\xff", payload, sig),
        "non-shortest payload length": b"\xd2\x84"
        + bstr(prot)
        + b"\xa0"
        + _long_bstr(payload)
        + bstr(sig),
        "non-shortest array head": b"\xd2\x98\x04" + genuine[2:],
        "non-shortest tag head": b"\xd8\x12" + genuine[1:],
        "duplicate unprotected label": _envelope(
            prot, b"\xa2\x04" + bstr(kid) + b"\x04" + bstr(kid), payload, sig
        ),
        "kid also unprotected": _envelope(prot, b"\xa1\x04" + bstr(kid), payload, sig),
        "unknown crit label, unprotected": _envelope(
            prot, cbor2.dumps({2: [99], 99: 0}, canonical=True), payload, sig
        ),
        "kilobytes of unprotected text": _envelope(
            prot, cbor2.dumps({"note": "A" * 4000}, canonical=True), payload, sig
        ),
    }


def resigned(genuine: bytes, signer: DeviceSigner) -> dict[str, bytes]:
    """Non-canonical protected headers, each signed by the device key."""
    m = parse_sign1(genuine)
    kid, payload = m.kid, m.payload

    def signed_with(protected: bytes) -> bytes:
        signature = signer.sign(_sig_structure(protected, payload))
        return _envelope(protected, b"\xa0", payload, signature)

    return {
        "duplicate protected label": signed_with(
            b"\xa3\x01\x27\x04" + bstr(kid) + b"\x04" + bstr(kid)
        ),
        "unknown crit label": signed_with(
            cbor2.dumps({1: -8, 2: [99], 4: kid, 99: 0}, canonical=True)
        ),
        "unknown protected label": signed_with(
            cbor2.dumps({1: -8, 4: kid, 99: "x" * 100}, canonical=True)
        ),
        "unsorted protected map": signed_with(b"\xa2\x04" + bstr(kid) + b"\x01\x27"),
        "non-shortest kid length": signed_with(b"\xa2\x01\x27\x04" + _long_bstr(kid)),
        "indefinite-length protected map": signed_with(b"\xbf\x01\x27\x04" + bstr(kid) + b"\xff"),
        "kid only unprotected": _envelope(
            b"\xa1\x01\x27",
            b"\xa1\x04" + bstr(kid),
            payload,
            signer.sign(_sig_structure(b"\xa1\x01\x27", payload)),
        ),
    }


def signature_holds(message: bytes, key: DeviceKey) -> bool:
    """Whether the signature verifies when the message is read the lenient way (any CBOR)."""
    parts = cbor2.loads(message).value  # cbor2 drops tag 55799 and what follows the array
    protected, _, payload, signature = parts
    return key.verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))
