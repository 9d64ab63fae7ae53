"""Field rules shared by the consent, patient key and access event formats.

Every body is a deterministic CBOR map with text keys (RFC 8949 4.2.1); a decoder checks the
keys and each field's type and range, rebuilds the value, and accepts the bytes only if
encoding it again gives them back, so each statement has exactly one encoding.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import cbor2

from devices.reading import MAX_TIME_MS, is_valid_device_id

PRINCIPAL_PATTERN = re.compile(r"[!-~]{1,255}")  # OIDC `sub` and OAuth client ids: ASCII, no space
CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # reason codes, roles, interactions
PURPOSE_PATTERN = re.compile(r"[A-Z][A-Z0-9]{1,31}")  # HL7 v3 PurposeOfUse (ActReason) codes
MAX_TEXT = 1024  # a break-glass or staff reason, a route template
MAX_ITEMS = 1024  # patients in one ward request, data classes, purposes


def is_patient_id(value: object) -> bool:
    """Patient ids follow the registry's rule (devices.registry): safe in URLs, keys and logs."""
    return isinstance(value, str) and is_valid_device_id(value)


def is_principal(value: object) -> bool:
    return isinstance(value, str) and PRINCIPAL_PATTERN.fullmatch(value) is not None


def is_code(value: object) -> bool:
    return isinstance(value, str) and CODE_PATTERN.fullmatch(value) is not None


def is_purpose(value: object) -> bool:
    return isinstance(value, str) and PURPOSE_PATTERN.fullmatch(value) is not None


def is_time(value: object) -> bool:
    """Milliseconds since the Unix epoch, as readings carry them."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIME_MS


def is_uint(value: object, limit: int = 2**63 - 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def is_text(value: object, limit: int = MAX_TEXT) -> bool:
    """Printable text of 1 to ``limit`` characters (no control characters: it reaches pages)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isprintable()
        and value.strip() == value
    )


def is_sorted_set(value: object, each: Any, *, empty: bool = False) -> bool:
    """A CBOR array of distinct items in ascending order, each passing ``each``: one encoding
    per set."""
    return (
        isinstance(value, list)
        and (empty or len(value) > 0)
        and len(value) <= MAX_ITEMS
        and all(each(item) for item in value)
        and all(a < b for a, b in itertools.pairwise(value))
    )


def sorted_set(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def load_map(
    data: bytes, keys: frozenset[str], optional: frozenset[str]
) -> Mapping[str, Any] | str:
    """The decoded map, or why ``data`` is not a map with exactly these keys."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for malformed input
        return f"not valid CBOR ({type(exc).__name__})"
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        return "not a CBOR map with text keys"
    present = set(obj)
    if not keys <= present or present - keys - optional:
        return f"a map with keys {sorted(keys)} and optionally {sorted(optional)}"
    if any(value is None for value in obj.values()):
        return "a map without nulls (a field that is not there is left out)"
    return obj


def dump_map(doc: Mapping[str, Any]) -> bytes:
    """Deterministic CBOR of a map, leaving out keys whose value is None."""
    return bytes(cbor2.dumps({k: v for k, v in doc.items() if v is not None}, canonical=True))
