"""Hostile input to the C2SP tlog-cosignature decoder: a witness's answer, added to the log's
note and checked against the pinned witness key, raises only NoteError."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given

from ledger.cosignature import add_signature_lines
from ledger.note import NoteError
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import corpus, text

C = corpus()
WITNESS = C.witness.verifier


@FAST
@given(hostile("cosignature"))
def test_cosignatures_raise_only_note_error(data: bytes) -> None:
    decode_or_documented_error("cosignature", data)


def test_the_genuine_cosignature_gives_its_time() -> None:
    line = text(C.cosignature_lines[0])
    assert WITNESS.timestamp(add_signature_lines(C.cosign_base, line)) is not None


def _line(signature: bytes) -> str:
    return f"\u2014 {WITNESS.name} {base64.b64encode(WITNESS.key_hash + signature).decode()}\n"


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (_line(bytes(10)), "not timestamp \\|\\| signature"),
        (_line(struct.pack(">Q", 2**64 - 1) + bytes(64)), "does not verify"),
        (f"\u2014 {WITNESS.name} \u00e9\u00e9\u00e9\u00e9\n", "not valid base64"),
        (f"\u2014 {WITNESS.name} \udc80\n", "not valid Unicode"),
        (f"\u2014 {WITNESS.name}\n", "signature line"),
        ("\n", "blank lines"),
    ],
)
def test_malformed_cosignatures_are_a_note_error(line: str, detail: str) -> None:
    with pytest.raises(NoteError, match=detail):
        WITNESS.timestamp(add_signature_lines(C.cosign_base, line))
