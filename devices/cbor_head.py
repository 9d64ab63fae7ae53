"""Hand-written CBOR heads for the two hot-path encodings (COSE Sig_structure, ledger entry).

Both are fixed shapes around large byte strings, so writing the heads directly is exact and
several times faster than a generic encoder; tests compare them with cbor2's canonical output.
"""

from __future__ import annotations

import struct

MAX_ARGUMENT = 2**64 - 1


def head(major: int, value: int) -> bytes:
    """The shortest CBOR head for ``major`` type with argument ``value`` (RFC 8949 3.1).

    CBOR arguments are 64-bit: a larger (or negative) value is a :class:`ValueError`.
    """
    if not 0 <= value <= MAX_ARGUMENT:
        raise ValueError("a CBOR argument is an integer from 0 to 2**64 - 1")
    mt = major << 5
    if value < 24:
        return bytes([mt | value])
    if value < 0x100:
        return bytes([mt | 24, value])
    if value < 0x10000:
        return bytes([mt | 25]) + struct.pack(">H", value)
    if value < 0x100000000:
        return bytes([mt | 26]) + struct.pack(">I", value)
    return bytes([mt | 27]) + struct.pack(">Q", value)


def uint(value: int) -> bytes:
    return head(0, value)


def bstr(data: bytes) -> bytes:
    return head(2, len(data)) + data
