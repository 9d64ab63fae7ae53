"""Hostile input to the C2SP tlog-proof decoder: TlogProof.parse raises only ProofFormatError."""

from __future__ import annotations

import pytest
from hypothesis import given

from ledger.tlog_proof import ProofFormatError, TlogProof
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import corpus, text

GENUINE = text(corpus().proofs[0])
HEAD, _, NOTE = GENUINE.partition("\n\n")
HASH_LINE = HEAD.split("\n")[-1]


@FAST
@given(hostile("tlog-proof"))
def test_tlog_proof_parse_raises_only_proof_format_error(data: bytes) -> None:
    decode_or_documented_error("tlog-proof", data)


def _proof(*lines: str) -> str:
    return "\n".join(["c2sp.org/tlog-proof@v1", *lines]) + "\n\n" + NOTE


def test_the_largest_64_bit_index_parses() -> None:
    assert TlogProof.parse(_proof(f"index {2**64 - 1}")).index == 2**64 - 1


@pytest.mark.parametrize(
    ("proof", "detail"),
    [
        (_proof(f"index {2**64}"), "64-bit"),
        (_proof("index 99999999999999999999"), "64-bit"),
        (_proof("index \u0663"), "index <n>"),  # a digit to str.isdigit(), not to the format
        (_proof("index 1", "\u00e9" * 44), "not valid base64"),
        (_proof("index 1", "\udc80" * 44), "not valid base64"),
        (_proof("extra \u00e9", "index 1"), "not valid base64"),
        (_proof("index 1", *[HASH_LINE] * 65), "at most 64 hashes"),
    ],
)
def test_malformed_proofs_are_a_proof_format_error(proof: str, detail: str) -> None:
    with pytest.raises(ProofFormatError, match=detail):
        TlogProof.parse(proof)
