"""Nothing a client sends can crash the checks: mutated and random messages always get a verdict."""

from __future__ import annotations

import random

import cbor2

from devices.keys import DeviceSigner
from devices.registry import DeviceRecord
from ingest.checks import Admitted, BatchChecker, Rejected
from ingest.reasons import Reason
from tests.stack import now_ms, signed

SIGNER = DeviceSigner.generate()
RECORDS = {SIGNER.key.kid: DeviceRecord("band-1", "patient-1", SIGNER.key, 0, None)}
TOPIC = "r/band-1/readings"


def _mutations(valid: bytes, seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.5:
                data[pos] = rng.randrange(256)
            elif op < 0.75:
                del data[pos : pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 20))
        out.append(bytes(data))
    return out


def test_mutated_messages_are_all_rejected_with_a_reason_and_never_raise() -> None:
    checker = BatchChecker(RECORDS.get, "r")
    valid = signed("band-1", SIGNER, 1)
    messages = _mutations(valid, seed=7, n=3000)
    verdicts = checker.check([(TOPIC, m) for m in messages], now_ms())
    assert len(verdicts) == 3000
    rejected = [v for v in verdicts if isinstance(v, Rejected)]
    assert all(v.reason is not Reason.UNPROCESSABLE for v in rejected), "a check crashed"
    # Only the canonical encoding is accepted, so a mutation is admitted only if it left the
    # bytes as they were (e.g. a byte set to its own value): the genuine reading.
    for message, v in zip(messages, verdicts, strict=True):
        if isinstance(v, Admitted):
            assert message == valid
    assert len(rejected) > 2900


def test_random_bytes_and_hostile_structures_get_a_verdict() -> None:
    rng = random.Random(3)
    hostile = [rng.randbytes(rng.randint(0, 600)) for _ in range(500)] + [
        cbor2.dumps(cbor2.CBORTag(18, [b"\xa0", {4: b"k" * 10_000}, b"", b"\x00" * 64])),
        b"\x81" * 5000 + b"\x80",  # 5,000 nested definite arrays
        b"\x9f" * 5000,  # deeply nested indefinite arrays
        b"\xbf" * 5000,
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string claiming 2**64 bytes
        cbor2.dumps(
            cbor2.CBORTag(
                18,
                [
                    cbor2.dumps({1: -8, 4: b"k"}),
                    {},
                    cbor2.dumps({"device": "x" * 10**4}),
                    b"s" * 64,
                ],
            )
        ),
    ]
    verdicts = BatchChecker(RECORDS.get, "r").check([(TOPIC, m) for m in hostile], now_ms())
    assert all(isinstance(v, Rejected) for v in verdicts)
    assert all(v.reason is not Reason.UNPROCESSABLE for v in verdicts if isinstance(v, Rejected))
