"""The access journal as the ingestor sees it: rows to copy into the ledger, if there is one.

The API commits consents, patient keys and access events to its journal (access.journal)
before any data leaves; the ingestor, the ledger's only writer, copies them in. The journal
is the API's to create: until it exists there is nothing to copy, and the ingestor looks
again at its next batch or timer tick. A journal that cannot be read is logged and counted,
and never stops readings: its rows stay durable where they are and are copied once it reads
again, in their journal order.
"""

from __future__ import annotations

import logging
from pathlib import Path

from access.errors import JournalError
from access.journal import Journal, Pending
from ledger.ledger import Ledger

log = logging.getLogger("vitaltrail.ingest")

PAGE = 10_000  # journal rows per append at most; the next batch or tick takes the rest


class JournalSource:
    """Opens the journal at ``path`` when it appears (never creating it) and reads what the
    ledger has not taken yet. Used from the ingestor's writer thread only."""

    def __init__(self, path: Path, *, page: int = PAGE) -> None:
        self.path = path
        self._page = page
        self._journal: Journal | None = None

    def pending(self, ledger: Ledger, now_ms: int) -> Pending | None:
        """Rows after the ledger's cursor, as entries logged at ``now_ms``; None when there is
        no journal yet. Raises :class:`JournalError` when the journal cannot be read."""
        journal = self._open()
        if journal is None:
            return None
        cursor = ledger.log.meta(journal.cursor_name) or 0
        return journal.pending(cursor, now_ms, self._page)

    def _open(self) -> Journal | None:
        if self._journal is None:
            if not self.path.exists():
                return None
            try:
                self._journal = Journal(self.path, create=False)
            except JournalError:
                if not self.path.exists():  # removed between the look and the open
                    return None
                raise
            log.info("copying the access journal %s into the ledger", self.path)
        return self._journal

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
