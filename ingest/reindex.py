"""Rebuild the time-series store from the ledger: the ledger is the record, the store an index.

Every reading in the log is decoded from the signed message it holds, and its samples are
written under the patient its key's registration names (the registration is in the log too,
earlier than the reading), with the reading's entry index - exactly what ingest wrote. Writes
are idempotent, so reindexing into a partly filled store only completes it. A logged reading
that is not valid by today's rules (e.g. a non-canonical envelope logged before issue 8), or
whose key has no registration before it, is skipped with a warning and counted: `vitaltrail
audit` reports it.

:func:`logged_readings` is that decoding on its own, for every index derived from the log
(the FHIR observation index follows the log with it too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import Reading, decode_reading
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


@dataclass(frozen=True)
class LoggedReading:
    """A reading as the log holds it: where, when it was logged, and whose it is."""

    index: int
    logged_at_ms: int
    reading: Reading
    patient_id: str  # from its key's registration, earlier in the log


def logged_readings(
    ledger: LedgerReader,
    start: int,
    end: int,
    patients: MutableMapping[bytes, str],
    stats: ReindexStats | None = None,
) -> Iterator[LoggedReading]:
    """The valid readings of entries ``[start, end)``, in log order.

    ``patients`` maps key ids to the patient their registration names: the registrations
    before ``start`` must be in it, and those in the range are added as they pass (a caller
    that stops and resumes keeps it). Readings that do not decode, or whose key was not
    registered before them, are skipped with a warning and counted in ``stats.skipped``."""
    stats = stats if stats is not None else ReindexStats()
    for index, data in ledger.log.entries(start, end):
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
            patient = patients.get(message.kid)
            if patient is None:
                log.warning("entry %d is a reading of an unregistered key, skipped", index)
                stats.skipped += 1
                continue
            stats.readings += 1
            yield LoggedReading(index, entry.logged_at_ms, reading, patient)


def reindex(
    ledger: LedgerReader,
    store: TimeSeriesStore,
    *,
    batch_points: int = 20_000,
    progress: Callable[[ReindexStats], None] | None = None,
) -> ReindexStats:
    stats = ReindexStats()
    pending: list[SamplePoint] = []
    for logged in logged_readings(ledger, 0, ledger.log.stored_size(), {}, stats):
        pending.extend(sample_points(logged.reading, logged.patient_id, logged.index))
        if len(pending) >= batch_points:
            store.write(pending)
            stats.points += len(pending)
            pending = []
            if progress is not None:
                progress(stats)
    store.write(pending)
    stats.points += len(pending)
    return stats
