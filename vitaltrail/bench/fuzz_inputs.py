"""Hostile inputs for the decoders: random bytes, byte edits of valid encodings, and edits that
know the format (a CBOR node, a line of text, a JSON value replaced by something hostile).

Byte edits are data (:data:`Edit`), so the hypothesis tests draw and shrink the same edits
the benchmark draws at random. The structure-aware edits keep most of a valid encoding so the
input gets past the first check: a COSE message is re-signed with the device key after its
payload is changed, so the reading decoder behind the signature check is reached too.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
from typing import Any

import cbor2

from devices.cose import sign1
from vitaltrail.bench.fuzz_corpus import Target, corpus

MAX_INPUT = 16 * 1024
RESIGNED = ("ingest checks", "cose", "signed consent")  # COSE seeds re-signed after an edit
OPS = ("set", "delete", "insert", "duplicate", "truncate", "splice")
Edit = tuple[str, int, bytes]  # (op, position, bytes): position is taken modulo the length

CBOR_TOKENS = [
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # 2**64 - 1
    b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff",  # -2**64
    b"\xc2\x49\x01" + bytes(8),  # bignum 2**64
    b"\xc2\x58\x90" + b"\xff" * 144,  # bignum beyond the float range
    b"\xc3\x49\x01" + bytes(8),
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # infinity
    b"\xf9\x7e\x00",  # NaN
    b"\xfb\x7f\xef\xff\xff\xff\xff\xff\xff",  # the largest float
    b"\xc4\x82\x3b\x7f\xff\xff\xff\xff\xff\xff\xff\x01",  # decimal fraction 1e-(2**63)
    b"\xd9\xd9\xf7",
    b"\xd2",
    b"\xd8\x1c\x81\xd8\x1d\x00",  # a shared array holding itself
    b"\xd9\x01\x02\x81\x80",  # a set holding an array
    b"\xa1\x80\x00",  # a map keyed by an array
    b"\xa2\x01\x27\x01\x27",  # a duplicate key
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64 - 1 bytes
    b"\x9f",
    b"\xbf",
    b"\xff",
    b"\x5f",
    b"\x7f",
    b"\x80",
    b"\xa0",
    b"\xf4",
    b"\xf5",
    b"\xf6",
    b"\xf7",
    b"\x81" * 300 + b"\x00",
    b"\x9f" * 300,
]
TEXT_TOKENS = [
    "\n",
    "\n\n",
    "\u2014 ",
    "\u2014 x AAAAAAAA\n",
    "index 18446744073709551616",
    "index 99999999999999999999",
    "old 18446744073709551616\n",
    "18446744073709551616\n",
    "\udc80",
    "\ud800",
    "\u0663",  # an Arabic-Indic digit: str.isdigit() says yes
    "+",
    "=",
    "\r",
    "\x00",
    "\u2028",
    "extra ",
    "c2sp.org/tlog-proof@v1\n",
    "A" * 44,
    "\u00e9" * 3,
    "9" * 5000,
]
JSON_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**64,
    10**400,
    1.5e308,
    "",
    "\ud800",
    "A" * 10_000,
    [],
    {},
    {"entry": "AA==", "proof": ""},
]


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 2, 8, 40, 200, 600)))


def random_edits(rng: random.Random, kind: str) -> list[Edit]:
    tokens = (
        CBOR_TOKENS if kind == "cbor" else [t.encode(errors="surrogateescape") for t in _texts()]
    )
    edits = []
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(OPS)
        blob = rng.choice(tokens) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 12))
        edits.append((op, rng.randrange(1 << 16), blob))
    return edits


def _texts() -> list[str]:
    return [
        t.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape") for t in TEXT_TOKENS
    ]


def apply_edits(data: bytes, edits: list[Edit], other: bytes = b"") -> bytes:
    """Apply byte edits in order (``splice`` takes ``other``'s tail from the edit's position)."""
    out = bytearray(data)
    for op, position, blob in edits:
        pos = position % (len(out) + 1)
        if op == "set":
            out[pos : pos + len(blob)] = blob
        elif op == "delete":
            del out[pos : pos + 1 + len(blob) * 4]
        elif op == "insert":
            out[pos:pos] = blob
        elif op == "duplicate":
            out[pos:pos] = out[pos : pos + 1 + (blob[0] if blob else 0)]
        elif op == "truncate":
            del out[pos:]
        elif op == "splice" and other:
            out[pos:] = other[position % len(other) :]
    return bytes(out[:MAX_INPUT])


def structured(rng: random.Random, target: Target) -> bytes:
    """An edit that knows the target's format."""
    seed = rng.choice(target.seeds)
    if target.kind == "cbor":
        return _cbor_edit(rng, seed, resign=target.name in RESIGNED)
    if target.kind == "json":
        return _json_edit(rng, seed)
    if target.kind == "jwt":
        return _jwt_edit(rng, seed, target)
    return _text_edit(rng, seed.decode("utf-8", "surrogateescape")).encode(
        "utf-8", "surrogateescape"
    )


def hostile_input(rng: random.Random, target: Target) -> bytes:
    """One input for ``target``: random, byte-edited, or format-aware, in about equal parts."""
    roll = rng.random()
    if roll < 0.1:
        return random_bytes(rng)
    if roll < 0.55:
        seed, other = rng.choice(target.seeds), rng.choice(target.seeds)
        return apply_edits(seed, random_edits(rng, target.kind), other)
    return structured(rng, target)


# --- CBOR ------------------------------------------------------------------------------------


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A Python value that encodes as CBOR a decoder should refuse (or hold its own with)."""
    choice = rng.randrange(12 if depth < 3 else 8)
    if choice == 0:
        return rng.choice([0, -1, 23, 24, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64) - 1])
    if choice == 1:
        return rng.choice([2**70, -(2**70), 2**1100, 10**400, 2**53, 2**53 + 1])
    if choice == 2:
        return rng.choice([math.nan, math.inf, -math.inf, 1.5e308, -0.0, 72.0, 5e-324])
    if choice == 3:
        return rng.randbytes(rng.choice((0, 1, 32, 64, 65, 300)))
    if choice == 4:
        return rng.choice(["", "8867-4", "/min", "x" * 70, "band-1", "\u2014", "a b", "../x"])
    if choice == 5:
        return rng.choice([True, False, None, cbor2.undefined])
    if choice == 6:
        return cbor2.CBORTag(rng.choice([2, 3, 18, 24, 55799, 256, 1 << 40]), hostile_value(rng, 3))
    if choice == 7:
        return cbor2.CBORSimpleValue(rng.randrange(32, 256))
    if choice in (8, 9):
        return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {hostile_key(rng): hostile_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def hostile_key(rng: random.Random) -> Any:
    return rng.choice(
        ["device", "seq", "samples", "battery", "code", "unit", "value", "time", 1, 2, 4, -8, b"k"]
    )


def _replace_node(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one node (maybe itself) replaced, descending into CBOR held in bytes."""
    if depth > 0 and rng.random() < 0.3:
        return hostile_value(rng)
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, _replace_node(rng, value.value, depth + 1))
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [*value[:i], _replace_node(rng, value[i], depth + 1), *value[i + 1 :]]
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        out = dict(value)
        if rng.random() < 0.2:
            out[hostile_key(rng)] = hostile_value(rng)
        elif rng.random() < 0.2:
            del out[key]
        else:
            out[key] = _replace_node(rng, value[key], depth + 1)
        return out
    if isinstance(value, bytes) and value:
        try:
            inner = cbor2.loads(value)
        except Exception:  # not CBOR inside: edit the bytes
            return apply_edits(value, random_edits(rng, "cbor"))
        return _dumps(rng, _replace_node(rng, inner, depth + 1)) or value
    return hostile_value(rng)


def _dumps(rng: random.Random, value: Any) -> bytes | None:
    try:
        return bytes(cbor2.dumps(value, canonical=rng.random() < 0.7))
    except Exception:  # a value cbor2 will not write (e.g. a NaN key): skip this edit
        return None


def _cbor_edit(rng: random.Random, seed: bytes, *, resign: bool) -> bytes:
    try:
        decoded = cbor2.loads(seed)
    except Exception:  # an edited seed that no longer decodes: edit its bytes instead
        return apply_edits(seed, random_edits(rng, "cbor"))
    if resign and isinstance(decoded, cbor2.CBORTag) and rng.random() < 0.5:
        # A hostile reading the device key really signed: it reaches decode_reading.
        payload = _dumps(rng, _replace_node(rng, cbor2.loads(decoded.value[2])))
        return sign1(corpus().signer, payload if payload is not None else seed)
    return _dumps(rng, _replace_node(rng, decoded)) or seed


# --- text ------------------------------------------------------------------------------------


def _text_edit(rng: random.Random, seed: str) -> str:
    lines = seed.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            lines[i] = rng.choice(_texts())
        elif op == 3:
            lines.insert(i, rng.choice(_texts()) * rng.choice((1, 2, 50)))
        elif op == 4 and lines[i]:
            at = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:at] + rng.choice(_texts()) + lines[i][at + 1 :]
        elif lines:
            lines[i] = _edit_base64(rng, lines[i])
        if not lines:
            lines = [""]
    return "\n".join(lines)[:MAX_INPUT]


def _edit_base64(rng: random.Random, line: str) -> str:
    """A line's last word, if base64, decoded, edited and encoded again (so it stays base64)."""
    head, _, word = line.rpartition(" ")
    try:
        raw = base64.b64decode(word, validate=True)
    except (binascii.Error, ValueError):
        return line + rng.choice(_texts())
    edited = apply_edits(raw, random_edits(rng, "cbor"))
    return (head + " " if head else "") + base64.b64encode(edited).decode()


# --- JSON ------------------------------------------------------------------------------------


def _json_edit(rng: random.Random, seed: bytes) -> bytes:
    doc = json.loads(seed)
    roll = rng.random()
    if roll < 0.1:
        depth = rng.choice((50, 1000, 100_000))
        return (b"[" * depth + b"]" * depth)[: MAX_INPUT * 64]
    edited = _json_replace(rng, doc)
    return json.dumps(edited, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def _json_replace(rng: random.Random, value: Any) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.85:
        key = rng.choice(list(value))
        return {**value, key: _json_replace(rng, value[key])}
    if isinstance(value, str) and rng.random() < 0.8:
        if value.startswith("c2sp.org/"):
            return _text_edit(rng, value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value + rng.choice(_texts())
        return base64.b64encode(_cbor_edit(rng, raw, resign=False)).decode()
    return rng.choice(JSON_VALUES)


# --- JWT -------------------------------------------------------------------------------------


def _jwt_edit(rng: random.Random, seed: bytes, target: Target) -> bytes:
    """A compact JWS with its header or claims edited as JSON; re-signed half the time with
    the key the decoder trusts (so the claim checks are reached), else with the old signature."""
    parts = seed.split(b".")
    if len(parts) != 3 or rng.random() < 0.15:
        return _text_edit(rng, seed.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + b"==")) for p in parts[:2])
    except ValueError:  # an edited seed: edit its text instead
        return apply_edits(seed, random_edits(rng, "jwt"))
    if rng.random() < 0.3:
        header = _json_replace(rng, header)
    else:
        claims = _json_replace(rng, claims)
    payload = json.dumps(claims, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if target.resign is not None and isinstance(header, dict) and rng.random() < 0.5:
        return target.resign(header, payload)
    head = json.dumps(header).encode("utf-8", "surrogatepass")
    return b".".join([_b64url(head), _b64url(payload), parts[2]])


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
