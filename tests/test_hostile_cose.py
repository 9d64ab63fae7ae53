"""Hostile input to the COSE/CBOR reading decoders and the ingest checks built on them.

parse_sign1 raises only CoseError, decode_reading only PayloadError, and the checks always
answer with a reason: never `unprocessable`, never a logged traceback.
"""

from __future__ import annotations

import logging

import cbor2
import pytest
from hypothesis import given

from devices.cose import sign1
from devices.registry import DeviceRecord
from ingest.checks import BatchChecker, Rejected
from ingest.reasons import Reason
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import DEVICE, NOW_MS, corpus


@FAST
@given(hostile("cose"))
def test_parse_sign1_raises_only_cose_error(data: bytes) -> None:
    decode_or_documented_error("cose", data)


@FAST
@given(hostile("reading"))
def test_decode_reading_raises_only_payload_error(data: bytes) -> None:
    decode_or_documented_error("reading", data)


@FAST
@given(hostile("ingest checks"))
def test_the_checks_answer_every_message_with_a_verdict(data: bytes) -> None:
    decode_or_documented_error("ingest checks", data)


def _signed_payload(**change: object) -> bytes:
    """A reading the device key really signed, with fields changed to values no encoder of
    ours would write (the signature holds: only the payload's checks can refuse it)."""
    sample = {"code": "8867-4", "unit": "/min", "value": 72, "time": NOW_MS}
    reading: dict[str, object] = {"device": DEVICE, "seq": 1, "samples": [sample]}
    for key, value in change.items():
        if key in sample:
            sample[key] = value
        else:
            reading[key] = value
    return sign1(corpus().signer, cbor2.dumps(reading, canonical=True))


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"value": 2**1100}, "from 2**53 up is written as a float"),  # beyond the float range
        ({"value": -(2**1100)}, "from 2**53 up is written as a float"),
        ({"value": 2**53}, "from 2**53 up is written as a float"),
        ({"value": 72.0}, "not deterministically encoded"),  # a whole value is an integer
        ({"value": 1.5e308}, "outside"),  # a float, but no heart rate: implausible, not malformed
        ({"seq": 2**64}, "seq must be in"),
        ({"seq": 2**70}, "seq must be in"),
        ({"seq": -(2**70)}, "seq must be in"),
        ({"time": 2**64}, "sample time"),
        ({"time": 2**70}, "sample time"),
    ],
)
def test_out_of_range_numbers_are_a_reason_not_a_traceback(
    change: dict[str, object], detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = corpus()
    record = DeviceRecord(DEVICE, "p-1", c.signer.key, 0, None)
    checker = BatchChecker({c.signer.key.kid: record}.get, "r")
    with caplog.at_level(logging.DEBUG):
        (verdict,) = checker.check([(f"r/{DEVICE}/readings", _signed_payload(**change))], NOW_MS)
    assert isinstance(verdict, Rejected)
    expected = Reason.IMPLAUSIBLE_VALUE if detail == "outside" else Reason.MALFORMED_PAYLOAD
    assert verdict.reason is expected
    assert detail in verdict.detail
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
