"""Hostile input to the C2SP tlog-checkpoint decoder (Checkpoint.parse raises only
CheckpointError) and to the witness's add-checkpoint request, which carries a checkpoint."""

from __future__ import annotations

import pytest
from hypothesis import given

from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.witness import BadRequest, parse_submission
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import corpus, text

ROOT = "A" * 43 + "="
NOTE = text(corpus().notes[0])


@FAST
@given(hostile("checkpoint"))
def test_checkpoint_parse_raises_only_checkpoint_error(data: bytes) -> None:
    decode_or_documented_error("checkpoint", data)


@FAST
@given(hostile("witness request"))
def test_a_witness_request_raises_only_its_documented_errors(data: bytes) -> None:
    decode_or_documented_error("witness request", data)


def test_the_largest_64_bit_size_parses() -> None:
    assert Checkpoint.parse(f"o\n{2**64 - 1}\n{ROOT}\n").size == 2**64 - 1


@pytest.mark.parametrize(
    "bad",
    [
        f"o\n{2**64}\n{ROOT}\n",
        f"o\n99999999999999999999\n{ROOT}\n",
        f"o\n\u0663\n{ROOT}\n",
        "o\n1\n" + "\u00e9" * 44 + "\n",
        "o\n1\n" + "\udc80" * 44 + "\n",
    ],
)
def test_out_of_range_sizes_and_non_ascii_roots_are_a_checkpoint_error(bad: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(bad)


@pytest.mark.parametrize(
    "body",
    [
        b"old \xd9\xa3\n\n" + NOTE.encode(),  # an Arabic-Indic digit
        f"old {2**64}\n\n".encode() + NOTE.encode(),
        b"old " + b"9" * 5000 + b"\n\n" + NOTE.encode(),  # beyond int()'s digit limit
        "old 1\n\u00e9\u00e9\u00e9\u00e9\n\n".encode() + NOTE.encode(),
    ],
)
def test_malformed_witness_requests_are_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_submission(body)
