"""New Observations, as the subscription engine follows the ledger.

The engine asks for the Observations of the entries from a position on
(``fhirserver.subscription_engine.NewObservations``); this reads them from the ledger - the
record, whatever store the deployment uses - and makes them with ``observations_of``, as a
FHIR read makes them, so a notification's Observation is the one ``GET`` returns. A reading's
patient is the one its device's key is registered to (the registry: the same answer the API's
reading routes give), looked up by the key id that signed it.
"""

from __future__ import annotations

from pathlib import Path

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import decode_reading
from devices.registry import DeviceRegistry
from fhirserver.observations import observations_of
from fhirserver.subscription_engine import NewObservation, ObservationBatch
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader


class LedgerObservations:
    """``NewObservations`` over a ledger and the device registry (one thread's connections)."""

    def __init__(self, ledger: Path | str, registry: Path) -> None:
        self._ledger = LedgerReader(ledger)
        self._registry = DeviceRegistry(registry)

    def head(self) -> int:
        return self._ledger.log.stored_size()

    def since(self, position: int, limit: int, patients: frozenset[str]) -> ObservationBatch:
        end = min(self.head(), position + limit)
        found: list[NewObservation] = []
        if not patients:  # nobody subscribed: nothing to read
            return ObservationBatch(found, max(end, position))
        for index, data in self._ledger.log.entries(position, end):
            entry = LedgerEntry.decode(data)
            if entry.kind is not EntryKind.READING:
                continue
            try:
                message = parse_sign1(entry.body)
                reading = decode_reading(message.payload)
            except ReadingError:  # logged under older rules: the auditor reports it
                continue
            device = self._registry.by_kid(message.kid)
            if device is None or device.patient_id not in patients:
                continue
            found.extend(
                NewObservation(index, device.patient_id, resource)
                for resource in observations_of(
                    reading, index, device.patient_id, entry.logged_at_ms
                )
            )
        return ObservationBatch(found, max(end, position))

    def close(self) -> None:
        self._ledger.close()
        self._registry.close()
