"""Rebuild the time-series store from the ledger: the ledger is the record, the store an index.

Every reading in the log is decoded from the signed message it holds, and its samples are
written under the patient its key's registration names (the registration is in the log too,
earlier than the reading), with the reading's entry index - exactly what ingest wrote. Writes
are idempotent, so reindexing into a partly filled store only completes it. A logged reading
that is not valid by today's rules (e.g. a non-canonical envelope logged before issue 8) is
skipped with a warning and counted: `vitaltrail audit` reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import decode_reading
from ingest.store import SamplePoint, TimeSeriesStore, sample_points
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader

log = logging.getLogger("vitaltrail.reindex")


@dataclass
class ReindexStats:
    entries: int = 0
    readings: int = 0
    points: int = 0
    skipped: int = 0  # readings in the log that do not decode (audit reports them)


def reindex(
    ledger: LedgerReader,
    store: TimeSeriesStore,
    *,
    batch_points: int = 20_000,
    progress: Callable[[ReindexStats], None] | None = None,
) -> ReindexStats:
    stats = ReindexStats()
    patients: dict[bytes, str] = {}  # kid -> patient, from the registrations seen so far
    pending: list[SamplePoint] = []
    for index, data in ledger.log.entries(0, ledger.log.stored_size()):
        stats.entries += 1
        entry = LedgerEntry.decode(data)
        if entry.kind is EntryKind.DEVICE_REGISTERED:
            statement = DeviceKeyStatement.from_entry(entry)
            patients[statement.key.kid] = statement.patient_id or ""
        elif entry.kind is EntryKind.READING:
            try:
                message = parse_sign1(entry.body)
                reading = decode_reading(message.payload)
            except ReadingError as exc:
                log.warning("entry %d is not a valid reading, skipped: %s", index, exc)
                stats.skipped += 1
                continue
            pending.extend(sample_points(reading, patients[message.kid], index))
            stats.readings += 1
            if len(pending) >= batch_points:
                store.write(pending)
                stats.points += len(pending)
                pending = []
                if progress is not None:
                    progress(stats)
    store.write(pending)
    stats.points += len(pending)
    return stats
