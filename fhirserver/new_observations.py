"""New Observations, as the subscription engine follows the ledger.

The engine asks for the Observations of some patients in the entries from a position on
(``fhirserver.subscription_engine.NewObservations``). The FHIR observation index
(``fhirserver.index``) already follows the ledger and knows each reading's patient (its key's
registration, earlier in the log); this catches it up, asks it which Observations of those
patients the entries hold (``IndexReader.logged``) and makes them from the signed messages in
the ledger (``fhirserver.ledger_reads``), exactly as ``GET /fhir/Observation/{id}`` makes them.
"""

from __future__ import annotations

from pathlib import Path

from fhirserver.index import IndexReader, ObservationIndex
from fhirserver.ledger_reads import recorded_observations
from fhirserver.subscription_engine import NewObservation, ObservationBatch
from ledger.ledger import LedgerReader


class IndexedObservations:
    """``NewObservations`` over the process's observation index (its writer is shared) and
    this thread's own index reader and ledger reader."""

    def __init__(self, index: ObservationIndex, ledger: Path | str) -> None:
        self._index = index
        self._reader = IndexReader(index.path)
        self._ledger = LedgerReader(ledger)

    def head(self) -> int:
        """The ledger's size, every entry below it indexed."""
        return self._index.catch_up(self._ledger)

    def since(self, position: int, limit: int, patients: frozenset[str]) -> ObservationBatch:
        end = min(self.head(), position + limit)
        if not patients or end <= position:  # nobody subscribed, or nothing new
            return ObservationBatch([], max(end, position))
        rows = self._reader.logged(position, end, sorted(patients))
        made = recorded_observations(self._ledger, rows)
        return ObservationBatch(
            [
                NewObservation(r.entry_index, row.patient_id, r.resource)
                for row, r in zip(rows, made, strict=True)
            ],
            end,
        )

    def close(self) -> None:
        self._reader.close()
        self._ledger.close()
