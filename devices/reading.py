"""The reading: what a device signs. Deterministic CBOR (RFC 8949 section 4.2).

A reading is a CBOR map with text keys::

    {"device": "ward3-bed12-band", "seq": 42, "battery": 87,
     "samples": [{"code": "8867-4", "unit": "/min", "value": 72, "time": 1763700000000}]}

``battery`` (optional) is the device's charge in whole percent, 0..100: signed with the vitals,
so a forged battery level is as impossible as a forged heart rate.

``code`` is a LOINC code, ``unit`` a UCUM unit, ``time`` integer milliseconds since the Unix
epoch (UTC). The encoding must be deterministic (sorted keys, shortest integers and floats),
so that the same reading always has the same bytes; :func:`decode_reading` accepts a payload
only if it is byte for byte :func:`encode_reading` of what it decodes to (so a whole value is
an integer, never ``72.0``, and a value no float can hold is refused, not rounded). Whether a code, unit or value is *plausible* is the ingestor's
business; this module only checks the shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import cbor2

from devices.boundary import decoder
from devices.errors import PayloadError

DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LOINC_PATTERN = re.compile(r"[0-9]{1,7}-[0-9]")
UNIT_PATTERN = re.compile(r"[!-~]{1,24}")  # printable ASCII, no spaces (UCUM case-sensitive)
MAX_SAMPLES = 64
MAX_SEQ = 2**63 - 1
FLOAT_FROM = 2**53  # whole values this large are written as floats (see _cbor_number)
MAX_TIME_MS = 2**53  # well past year 285,000; keeps values exact as floats in JSON clients

_READING_KEYS = frozenset({"device", "seq", "samples"})
_OPTIONAL_KEYS = frozenset({"battery"})
_SAMPLE_KEYS = frozenset({"code", "unit", "value", "time"})


def is_valid_device_id(device_id: str) -> bool:
    """Device ids are safe in MQTT topics, file names, URLs and logs."""
    return DEVICE_ID_PATTERN.fullmatch(device_id) is not None


@dataclass(frozen=True)
class Sample:
    code: str
    unit: str
    value: float
    time_ms: int


@dataclass(frozen=True)
class Reading:
    device_id: str
    seq: int
    samples: tuple[Sample, ...]
    battery_pct: int | None = None  # the device's charge, whole percent; None: not reported


def encode_reading(reading: Reading) -> bytes:
    """The deterministic CBOR bytes of a reading (validated first)."""
    _check_reading(reading)
    obj: dict[str, Any] = {
        "device": reading.device_id,
        "seq": reading.seq,
        "samples": [
            {"code": s.code, "unit": s.unit, "value": _cbor_number(s.value), "time": s.time_ms}
            for s in reading.samples
        ],
    }
    if reading.battery_pct is not None:
        obj["battery"] = reading.battery_pct
    return cbor2.dumps(obj, canonical=True)


@decoder(PayloadError, "the reading")
def decode_reading(payload: bytes) -> Reading:
    """Parse and validate a reading; raise :class:`PayloadError` naming what is wrong."""
    try:
        obj = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types, including ValueError/TypeError
        raise PayloadError(f"payload is not valid CBOR ({type(exc).__name__})") from exc
    if not isinstance(obj, dict) or not _READING_KEYS <= set(obj) <= _READING_KEYS | _OPTIONAL_KEYS:
        raise PayloadError(
            f"payload must be a map with keys {sorted(_READING_KEYS)} and optionally"
            f" {sorted(_OPTIONAL_KEYS)}"
        )
    device_id, seq, raw_samples = obj["device"], obj["seq"], obj["samples"]
    if not isinstance(device_id, str) or not is_valid_device_id(device_id):
        raise PayloadError("device must be 1-64 characters of [A-Za-z0-9._-]")
    if not isinstance(raw_samples, list) or not 1 <= len(raw_samples) <= MAX_SAMPLES:
        raise PayloadError(f"samples must be an array of 1 to {MAX_SAMPLES} samples")
    battery = _int(obj["battery"], "battery") if "battery" in obj else None
    reading = Reading(device_id, _int(seq, "seq"), tuple(_sample(s) for s in raw_samples), battery)
    if encode_reading(reading) != payload:
        raise PayloadError("payload is not deterministically encoded CBOR (RFC 8949 4.2)")
    return reading


def _sample(raw: Any) -> Sample:
    if not isinstance(raw, dict) or set(raw) != _SAMPLE_KEYS:
        raise PayloadError(f"each sample must be a map with keys {sorted(_SAMPLE_KEYS)}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("sample value must be a number")
    if isinstance(value, int) and abs(value) >= FLOAT_FROM:
        raise PayloadError("a whole sample value from 2**53 up is written as a float")
    if not isinstance(raw["code"], str) or not isinstance(raw["unit"], str):
        raise PayloadError("sample code and unit must be text")
    return Sample(raw["code"], raw["unit"], float(value), _int(raw["time"], "time"))


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{name} must be an integer")
    return value


def _check_reading(reading: Reading) -> None:
    if not is_valid_device_id(reading.device_id):
        raise PayloadError("device must be 1-64 characters of [A-Za-z0-9._-]")
    if not 0 <= reading.seq <= MAX_SEQ:
        raise PayloadError(f"seq must be in [0, {MAX_SEQ}]")
    if reading.battery_pct is not None and not 0 <= reading.battery_pct <= 100:
        raise PayloadError("battery must be a whole percent in [0, 100]")
    if not 1 <= len(reading.samples) <= MAX_SAMPLES:
        raise PayloadError(f"a reading holds 1 to {MAX_SAMPLES} samples")
    for sample in reading.samples:
        if LOINC_PATTERN.fullmatch(sample.code) is None:
            raise PayloadError("sample code must be a LOINC code like 8867-4")
        if UNIT_PATTERN.fullmatch(sample.unit) is None:
            raise PayloadError("sample unit must be a UCUM unit of printable ASCII")
        if not math.isfinite(sample.value):
            raise PayloadError("sample value must be finite (no NaN or infinity)")
        if not 0 <= sample.time_ms <= MAX_TIME_MS:
            raise PayloadError("sample time must be milliseconds since the Unix epoch")


def _cbor_number(value: float) -> int | float:
    """Whole values encode as integers: the shortest deterministic form, the same in any language."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < FLOAT_FROM else value
