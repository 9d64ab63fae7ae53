"""Hostile bytes into the directory change decoder: only DirectoryChangeError escapes, never
only through the boundary's net, and what it accepts is exactly its one encoding."""

from __future__ import annotations

from hypothesis import given

from access.directory_changes import DirectoryChange
from access.errors import DirectoryChangeError
from tests.access_hostile import every_node_replaced, hostile_cbor, returns_or_raises_only
from tests.hostile import FAST
from vitaltrail.bench.fuzz_access import directory_changes

CHANGES = tuple(d.encode() for d in directory_changes())


@FAST
@given(hostile_cbor("directory change", CHANGES))
def test_directory_changes_raise_only_directory_change_error(data: bytes) -> None:
    outcome = returns_or_raises_only(DirectoryChange.decode, DirectoryChangeError, data)
    if isinstance(outcome, DirectoryChange):
        assert outcome.encode() == data


def test_every_field_replaced_by_a_hostile_value_is_refused_or_exact() -> None:
    refused = 0
    for seed in CHANGES:
        for data in every_node_replaced(seed):
            outcome = returns_or_raises_only(DirectoryChange.decode, DirectoryChangeError, data)
            if isinstance(outcome, DirectoryChange):
                assert outcome.encode() == data
            else:
                refused += 1
    assert refused > 500
