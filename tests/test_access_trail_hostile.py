"""Hostile bytes into the access event decoder: only AccessEventError escapes, never only
through the boundary's net."""

from __future__ import annotations

from hypothesis import given

from access.errors import AccessEventError
from access.trail import DENY, SEARCH, AccessEvent
from tests.access_helpers import app_read, user_read
from tests.access_hostile import every_node_replaced, hostile_cbor, returns_or_raises_only
from tests.hostile import FAST

EVENTS = (
    AccessEvent("0123456789abcdef", 1, app_read(request_id="req-1")).encode(),
    AccessEvent(
        "0123456789abcdef",
        2,
        user_read(
            "u-doc-1",
            "clinician",
            ("p-1", "p-2"),
            interaction=SEARCH,
            outcome=DENY,
            reason="not-in-care-team",
            break_glass="collapsed in the corridor",
        ),
    ).encode(),
)


@FAST
@given(hostile_cbor("access event", EVENTS))
def test_access_events_raise_only_access_event_error(data: bytes) -> None:
    returns_or_raises_only(AccessEvent.decode, AccessEventError, data)


def test_every_field_replaced_by_a_hostile_value_is_refused_or_exact() -> None:
    refused = 0
    for seed in EVENTS:
        for data in every_node_replaced(seed):
            outcome = returns_or_raises_only(AccessEvent.decode, AccessEventError, data)
            if isinstance(outcome, AccessEvent):
                assert outcome.encode() == data  # accepted only as its one encoding
            else:
                refused += 1
    assert refused > 500
