"""The Observations the index names, made from the signed messages the ledger holds.

The index says which Observations a search finds; their content always comes from the
ledger entry itself - the device's COSE_Sign1 message, decoded as ``vitaltrail verify``
decodes it - never from a copy. A page's entries are read a few ledger pages at a time
(256 entries to a page): the Observations of one search lie close together in the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from devices.cose import parse_sign1
from devices.reading import Reading, decode_reading
from fhirserver.index import IndexRow
from fhirserver.observations import observations_of
from ledger.entries import LedgerEntry
from ledger.entry_pages import PAGE_ENTRIES
from ledger.ledger import LedgerReader

NEAR_PAGES = 4  # wanted entries this many pages apart are read in one range


class NotInLedger(LookupError):
    """The index names an Observation its ledger entry does not make (a damaged index)."""


@dataclass(frozen=True)
class RecordedObservation:
    """An Observation and the signed message it was made of."""

    resource: dict[str, Any]
    entry_index: int
    sign1: bytes  # the device's COSE_Sign1 message, as logged
    reading: Reading
    logged_at_ms: int


def read_entries(ledger: LedgerReader, indices: Iterable[int]) -> dict[int, LedgerEntry]:
    """The ledger entries at ``indices``, read in ranges of nearby pages."""
    wanted = sorted(set(indices))
    keep = frozenset(wanted)
    found: dict[int, LedgerEntry] = {}
    for start, end in _ranges(wanted):
        for index, data in ledger.log.entries(start, end):
            if index in keep:
                found[index] = LedgerEntry.decode(data)
    return found


def _ranges(wanted: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of entries covering ``wanted`` (sorted), whole pages apart by
    at most :data:`NEAR_PAGES`."""
    ranges: list[tuple[int, int]] = []
    for index in wanted:
        if ranges and index // PAGE_ENTRIES - (ranges[-1][1] - 1) // PAGE_ENTRIES <= NEAR_PAGES:
            ranges[-1] = (ranges[-1][0], index + 1)
        else:
            ranges.append((index, index + 1))
    return ranges


def recorded_observations(
    ledger: LedgerReader, rows: Sequence[IndexRow]
) -> list[RecordedObservation]:
    """The Observations of ``rows``, in their order, each with its signed message."""
    entries = read_entries(ledger, (r.entry_index for r in rows))
    made: dict[int, tuple[LedgerEntry, Reading, dict[str, dict[str, Any]]]] = {}
    recorded = []
    for row in rows:
        if row.entry_index not in made:
            entry = entries.get(row.entry_index)
            if entry is None:
                raise NotInLedger(f"the ledger has no entry {row.entry_index}")
            reading = decode_reading(parse_sign1(entry.body).payload)
            resources = observations_of(
                reading, row.entry_index, row.patient_id, entry.logged_at_ms
            )
            made[row.entry_index] = (entry, reading, {r["id"]: r for r in resources})
        entry, reading, by_id = made[row.entry_index]
        resource = by_id.get(row.id)
        if resource is None:
            raise NotInLedger(f"entry {row.entry_index} makes no Observation {row.id}")
        recorded.append(
            RecordedObservation(resource, row.entry_index, entry.body, reading, entry.logged_at_ms)
        )
    return recorded
