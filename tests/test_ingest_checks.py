"""Admission checks, one reason at a time, without a broker."""

from __future__ import annotations

import math

import cbor2
import pytest

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.reading import Reading, Sample, encode_reading
from devices.registry import DeviceRecord
from ingest.checks import (
    Admitted,
    BatchChecker,
    Limits,
    RegistryCache,
    Rejected,
    check_message,
    topic_device,
)
from ingest.reasons import Reason
from tests.stack import now_ms, signed

SIGNER = DeviceSigner.generate()
OTHER = DeviceSigner.generate()
RECORDS = {
    SIGNER.key.kid: DeviceRecord("band-1", "patient-1", SIGNER.key, 0, None),
    OTHER.key.kid: DeviceRecord("band-2", "patient-2", OTHER.key, 0, 5),  # revoked
}


def check(payload: bytes, topic_device_id: str | None = "band-1") -> Admitted | Rejected:
    return check_message(topic_device_id, payload, RECORDS.get, now_ms(), Limits())


def reason(payload: bytes, topic_device_id: str | None = "band-1") -> Reason | None:
    verdict = check(payload, topic_device_id)
    return verdict.reason if isinstance(verdict, Rejected) else None


def raw_reading(samples: list[dict[str, object]], device: str = "band-1") -> bytes:
    """A signed payload built by hand, to carry values the SDK would refuse to encode."""
    payload = cbor2.dumps({"device": device, "seq": 1, "samples": samples}, canonical=True)
    return sign1(SIGNER, payload)


def test_a_good_reading_is_admitted_with_its_patient() -> None:
    verdict = check(signed("band-1", SIGNER, 1))
    assert isinstance(verdict, Admitted)
    assert verdict.patient_id == "patient-1"
    assert verdict.reading.seq == 1


def test_a_revoked_devices_genuine_message_is_left_to_the_ledger() -> None:
    """Only the ledger knows whether it was logged before the revocation (then a redelivery)
    or not (then refused as revoked_device, atomically with the append)."""
    verdict = check(signed("band-2", OTHER, 1), "band-2")
    assert isinstance(verdict, Admitted)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x00" * 8193, Reason.OVERSIZE),
        (b"", Reason.MALFORMED_COSE),
        (b"\xd2\x84", Reason.MALFORMED_COSE),
        (signed("band-1", DeviceSigner.generate(), 1), Reason.UNKNOWN_DEVICE),
        (sign1(SIGNER, b"not a reading"), Reason.MALFORMED_PAYLOAD),
        (signed("band-9", SIGNER, 1), Reason.DEVICE_MISMATCH),
        (
            raw_reading([{"code": "8867-4", "unit": "/min", "value": 900, "time": now_ms()}]),
            Reason.IMPLAUSIBLE_VALUE,
        ),
        (
            raw_reading([{"code": "8867-4", "unit": "/min", "value": -1, "time": now_ms()}]),
            Reason.IMPLAUSIBLE_VALUE,
        ),
        (
            raw_reading([{"code": "8867-4", "unit": "/min", "value": math.nan, "time": now_ms()}]),
            Reason.MALFORMED_PAYLOAD,
        ),
        (
            raw_reading([{"code": "8867-4", "unit": "/s", "value": 1.2, "time": now_ms()}]),
            Reason.UNKNOWN_VITAL,
        ),
        (
            raw_reading([{"code": "1234-5", "unit": "/min", "value": 70, "time": now_ms()}]),
            Reason.UNKNOWN_VITAL,
        ),
        (
            raw_reading(
                [{"code": "8867-4", "unit": "/min", "value": 70, "time": now_ms() + 3_600_000}]
            ),
            Reason.FUTURE_TIMESTAMP,
        ),
        (
            raw_reading([{"code": "8867-4", "unit": "/min", "value": 70, "time": 1000}]),
            Reason.STALE_TIMESTAMP,
        ),
    ],
    ids=lambda v: v.value if isinstance(v, Reason) else "",
)
def test_each_rejection_has_its_reason(payload: bytes, expected: Reason) -> None:
    assert reason(payload) is expected


def test_a_bit_flip_in_the_signature_is_a_bad_signature() -> None:
    good = bytearray(signed("band-1", SIGNER, 1))
    good[-1] ^= 1
    assert reason(bytes(good)) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("topic_id", [None, "band-2", "band-1 ", "../band-1"])
def test_the_topic_must_name_the_reading_device(topic_id: str | None) -> None:
    assert reason(signed("band-1", SIGNER, 1), topic_id) is Reason.TOPIC_MISMATCH


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("r/band-1/readings", "band-1"),
        ("r/band-1/extra/readings", None),
        ("r//readings", None),
        ("other/band-1/readings", None),
        ("r/band-1/status", None),
    ],
)
def test_topic_device(topic: str, device: str | None) -> None:
    assert topic_device(topic, "r") == device


def test_details_never_carry_patient_values() -> None:
    verdict = check(
        raw_reading([{"code": "8867-4", "unit": "/min", "value": 987, "time": now_ms()}])
    )
    assert isinstance(verdict, Rejected)
    assert "987" not in verdict.detail


def test_a_checker_never_raises_even_when_a_lookup_does() -> None:
    def broken(kid: bytes) -> DeviceRecord | None:
        raise RuntimeError("registry exploded")

    verdicts = BatchChecker(broken, "r").check(
        [("r/band-1/readings", signed("band-1", SIGNER, 1))], now_ms()
    )
    assert isinstance(verdicts[0], Rejected)
    assert verdicts[0].reason is Reason.UNPROCESSABLE


def test_registry_cache_sees_a_revocation_after_its_ttl() -> None:
    records = dict(RECORDS)
    cache = RegistryCache(records.get, ttl_s=0.0)
    assert cache(SIGNER.key.kid) is not None
    records[SIGNER.key.kid] = DeviceRecord("band-1", "patient-1", SIGNER.key, 0, 99)
    record = cache(SIGNER.key.kid)
    assert record is not None
    assert record.revoked


def test_samples_of_blood_pressure_travel_together() -> None:
    t = now_ms()
    reading = Reading(
        "band-1", 3, (Sample("8480-6", "mm[Hg]", 120, t), Sample("8462-4", "mm[Hg]", 80, t))
    )
    verdict = check(sign1(SIGNER, encode_reading(reading)))
    assert isinstance(verdict, Admitted)
    assert len(verdict.reading.samples) == 2
