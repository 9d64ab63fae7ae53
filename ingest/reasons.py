"""Why a message was refused. Every reason has a counter, a quarantine record and a test."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    OVERSIZE = "oversize"  # larger than the configured message limit
    MALFORMED_COSE = "malformed_cose"  # not a tagged COSE_Sign1 / EdDSA message with a kid
    UNKNOWN_DEVICE = "unknown_device"  # no registered device has this key
    REVOKED_DEVICE = "revoked_device"  # the device was revoked
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify under the device key
    MALFORMED_PAYLOAD = "malformed_payload"  # not a well-formed, deterministic reading
    DEVICE_MISMATCH = "device_mismatch"  # the reading names another device than its key's
    TOPIC_MISMATCH = "topic_mismatch"  # the topic names another device than the reading
    UNKNOWN_VITAL = "unknown_vital"  # a LOINC code vitaltrail does not know, or the wrong unit
    IMPLAUSIBLE_VALUE = "implausible_value"  # outside what a body or sensor can produce
    FUTURE_TIMESTAMP = "future_timestamp"  # too far ahead of the ingestor's clock
    STALE_TIMESTAMP = "stale_timestamp"  # older than the accepted replay window
    SEQUENCE_CONFLICT = "sequence_conflict"  # (device, seq) already recorded with other bytes
    UNPROCESSABLE = "unprocessable"  # a check failed unexpectedly (a bug): kept for analysis
