"""Admission: the per-message checks, in DESIGN.md's order, before anything is recorded.

size -> COSE parse -> registry lookup -> signature -> schema -> topic/payload/key agree ->
plausible values and times. Dedup on (device, seq) and revocation happen at the ledger,
atomically with the append. Each failure is a :class:`Rejected` with a :class:`~ingest.reasons.Reason` and a
detail that names what was wrong (never a patient value: details may reach logs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devices.cose import parse_sign1
from devices.errors import CoseError, PayloadError, SignatureError
from devices.reading import Reading, decode_reading
from devices.registry import DeviceRecord
from devices.vitals import BY_CODE
from ingest.reasons import Reason

log = logging.getLogger("vitaltrail.ingest")


# Room for a PUBLISH packet's own bytes around a message: fixed header and length (5), topic
# (2 + up to ~100 for a 64-character device id under the topic root), packet id (2), MQTT 5
# properties (a few). The broker's max_packet_size (vitaltrail/mosquitto.conf) and the
# Maximum Packet Size the ingestor announces are Limits.max_packet_bytes; a test holds the two.
MQTT_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 8192
    max_future_skew_ms: int = 5 * 60 * 1000  # device clocks drift; more than this is refused
    max_age_ms: int = 14 * 24 * 3600 * 1000  # devices replay their queue after outages

    @property
    def max_packet_bytes(self) -> int:
        """The largest MQTT packet the broker accepts and the ingestor takes: a message of
        ``max_message_bytes`` and its topic. A bigger message than that never reaches us; one
        in between is quarantined as oversize."""
        return self.max_message_bytes + MQTT_OVERHEAD_BYTES


@dataclass(frozen=True)
class Admitted:
    reading: Reading
    patient_id: str  # the patient the signing device is bound to
    kid: bytes  # the key that signed it


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str
    # the registered device whose key the message names, when its signature failed: a failure
    # counts against the device the message claims to come from (ingest.device_status)
    device_id: str | None = None


Lookup = Callable[[bytes], DeviceRecord | None]


class RegistryCache:
    """Device lookups by kid, cached briefly so a revocation takes effect within ``ttl_s``."""

    def __init__(self, lookup: Lookup, ttl_s: float = 2.0) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._cache: dict[bytes, tuple[float, DeviceRecord | None]] = {}

    def __call__(self, kid: bytes) -> DeviceRecord | None:
        now = time.monotonic()
        hit = self._cache.get(kid)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        record = self._lookup(kid)
        if len(self._cache) > 100_000:  # bounded: unknown kids from an attacker cannot grow it
            self._cache.clear()
        self._cache[kid] = (now, record)
        return record


def check_message(
    topic_device: str | None, payload: bytes, lookup: Lookup, now_ms: int, limits: Limits
) -> Admitted | Rejected:
    """Decide whether one MQTT message is a genuine, plausible reading."""
    if len(payload) > limits.max_message_bytes:
        return Rejected(Reason.OVERSIZE, f"{len(payload)} bytes > {limits.max_message_bytes}")
    try:
        message = parse_sign1(payload)
    except CoseError as exc:
        return Rejected(Reason.MALFORMED_COSE, str(exc))
    device = lookup(message.kid)
    if device is None:
        return Rejected(Reason.UNKNOWN_DEVICE, f"no device has key {message.kid.hex()[:16]}")
    # A revoked device's messages go on to the ledger, which refuses them as revoked_device
    # unless they were logged before the revocation (a redelivery: a duplicate).
    try:
        message.verify(device.key)
    except SignatureError as exc:
        return Rejected(Reason.BAD_SIGNATURE, str(exc), device.device_id)
    try:
        reading = decode_reading(message.payload)
    except PayloadError as exc:
        return Rejected(Reason.MALFORMED_PAYLOAD, str(exc))
    if reading.device_id != device.device_id:
        return Rejected(
            Reason.DEVICE_MISMATCH, f"key of {device.device_id} signed a reading of another device"
        )
    if topic_device != reading.device_id:
        return Rejected(
            Reason.TOPIC_MISMATCH, f"reading of {reading.device_id} on another device's topic"
        )
    return _check_plausible(reading, now_ms, limits) or Admitted(
        reading, device.patient_id, message.kid
    )


def _check_plausible(reading: Reading, now_ms: int, limits: Limits) -> Rejected | None:
    for sample in reading.samples:
        vital = BY_CODE.get(sample.code)
        if vital is None:
            return Rejected(Reason.UNKNOWN_VITAL, f"LOINC {sample.code} is not a supported vital")
        if sample.unit != vital.unit:
            return Rejected(
                Reason.UNKNOWN_VITAL, f"{vital.name} must be in {vital.unit}, not {sample.unit}"
            )
        if not vital.low <= sample.value <= vital.high:
            return Rejected(
                Reason.IMPLAUSIBLE_VALUE, f"{vital.name} outside [{vital.low}, {vital.high}]"
            )
        if sample.time_ms > now_ms + limits.max_future_skew_ms:
            return Rejected(
                Reason.FUTURE_TIMESTAMP, f"sample time is {sample.time_ms - now_ms} ms ahead"
            )
        if sample.time_ms < now_ms - limits.max_age_ms:
            return Rejected(
                Reason.STALE_TIMESTAMP, f"sample time is {now_ms - sample.time_ms} ms old"
            )
    return None


Verdict = Admitted | Rejected


def topic_device(topic: str, topic_root: str) -> str | None:
    """The device id a topic ``<root>/<device>/readings`` names, or None."""
    prefix, suffix = topic_root + "/", "/readings"
    if not (topic.startswith(prefix) and topic.endswith(suffix)):
        return None
    device = topic[len(prefix) : -len(suffix)]
    return device if device and "/" not in device else None


class BatchChecker:
    """Runs :func:`check_message` over a batch; never raises for anything a client sends."""

    def __init__(self, lookup: Lookup, topic_root: str, limits: Limits | None = None) -> None:
        self._lookup = lookup
        self._topic_root = topic_root
        self._limits = limits or Limits()

    def check(self, messages: Sequence[tuple[str, bytes]], now_ms: int) -> list[Verdict]:
        return [self._check_one(topic, payload, now_ms) for topic, payload in messages]

    def _check_one(self, topic: str, payload: bytes, now_ms: int) -> Verdict:
        try:
            device = topic_device(topic, self._topic_root)
            return check_message(device, payload, self._lookup, now_ms, self._limits)
        except Exception as exc:  # a bug, not the client's fault: keep the message, go on
            log.exception("unexpected error checking a message")
            return Rejected(Reason.UNPROCESSABLE, f"internal error: {type(exc).__name__}")
