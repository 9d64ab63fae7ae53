"""One batch of messages, made durable: checks, ledger append, store write, quarantine.

Synchronous, and run on the ingestor's single writer thread, which owns every database
handle. When :meth:`Pipeline.process` returns, the batch is committed everywhere it has to
be, and only then does the ingestor acknowledge it to the broker. The ledger commits first
(it is the record); store writes are idempotent, so a redelivered message whose ledger entry
exists rewrites its samples harmlessly, which also repairs a crash between the two commits.

Before each batch's readings, in the same append, go what other parts of the system recorded
first: the device registry's key events and the access journal's consents, patient keys and
access events (:mod:`ingest.access_copy`), each with its cursor in the ledger's meta, committed
with the entries. :meth:`Pipeline.seal` copies the journal too, so an access is sealed with the
next block even when no reading arrives. Every entry has a ledger key, so a copy made twice -
a crash before the cursor moved, or several ingestors on a shared log copying the same
journal - finds the entries logged (DUPLICATE) and adds nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from access.errors import JournalError
from access.journal import Pending
from devices.registry import KeyEvent
from ingest.access_copy import JournalSource
from ingest.checks import Admitted, BatchChecker, Limits, Lookup, Rejected, Verdict
from ingest.device_status import DeviceStatusStore, StatusBatch
from ingest.mqtt_source import InboundMessage
from ingest.quarantine import Quarantine, QuarantineRecord, Stored
from ingest.reasons import Reason
from ingest.store import SamplePoint, TimeSeriesStore, sample_points
from ledger.appends import AppendResult, AppendStatus, NewEntry
from ledger.blocks import Block
from ledger.device_keys import REVOKED, DeviceKeyStatement, key_entry_key
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger

log = logging.getLogger("vitaltrail.ingest")


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[Reason] = field(default_factory=Counter)
    recorded: list[tuple[str, int, int]] = field(default_factory=list)  # (device, seq, index)
    quarantined: Stored = field(default_factory=Stored)  # records cut short, and old ones deleted
    access_entries: int = 0  # access-journal rows newly logged
    journal_unreadable: bool = False  # the journal exists but could not be read this time


class StoreWriteFailed(Exception):
    """The ledger took the batch, the time-series store did not: nothing is acknowledged, and
    the redelivered messages will find their entries logged (``appended`` of them now)."""

    def __init__(self, appended: int) -> None:
        super().__init__(f"the store refused the batch after {appended} readings were logged")
        self.appended = appended


class KeyEvents(Protocol):
    """Where device registrations and revocations come from (the device registry)."""

    def events_after(self, seq: int, limit: int = ...) -> list[KeyEvent]: ...


REGISTRY_CURSOR = "registry_cursor"  # the last key event copied into the ledger


class Pipeline:
    def __init__(
        self,
        ledger: Ledger,
        store: TimeSeriesStore,
        quarantine: Quarantine,
        lookup: Lookup,
        key_events: KeyEvents,
        *,
        topic_root: str,
        limits: Limits | None = None,
        journal: JournalSource | None = None,
        device_status: DeviceStatusStore | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.quarantine = quarantine
        self.checker = BatchChecker(lookup, topic_root, limits)
        self._key_events = key_events
        self._journal = journal
        self.device_status = device_status
        self._status = StatusBatch()  # device news since the last flush (written at each seal)

    @property
    def unsealed(self) -> int:
        return self.ledger.size - self.ledger.sealed_size

    def process(
        self,
        batch: Sequence[InboundMessage],
        now_ms: int,
        verdicts: Sequence[Verdict] | None = None,
    ) -> BatchResult:
        """Record a batch. ``verdicts`` come from a :class:`~ingest.check_pool.CheckPool`;
        without them the checks run here."""
        if verdicts is None:
            verdicts = self.checker.check([(m.topic, m.payload) for m in batch], now_ms)
        result = BatchResult()
        admitted: list[tuple[InboundMessage, Admitted]] = []
        refused: list[QuarantineRecord] = []
        status = self._status
        for msg, verdict in zip(batch, verdicts, strict=True):
            if isinstance(verdict, Rejected):
                if verdict.device_id is not None:
                    status.failed(verdict.device_id, now_ms, verdict.reason.value)
                refused.append(
                    QuarantineRecord(now_ms, msg.topic, verdict.reason, verdict.detail, msg.payload)
                )
            else:
                admitted.append((msg, verdict))

        events = self._pending_key_events()
        key_entries = [_statement(event).entry(now_ms) for event in events]
        journal = self._pending_journal(now_ms, result)
        journal_entries = journal.entries if journal else []
        meta = {REGISTRY_CURSOR: events[-1].seq} if events else {}
        if journal is not None:
            meta |= journal.meta
        appended = self.ledger.append(
            [
                *key_entries,
                *journal_entries,
                *(
                    NewEntry(
                        reading_key(a.reading.device_id, a.reading.seq),
                        LedgerEntry(EntryKind.READING, now_ms, msg.payload).encode(),
                        # never logged after its key's revocation, whoever appends that first
                        key_entry_key(a.kid, REVOKED),
                    )
                    for msg, a in admitted
                ),
            ],
            meta=meta or None,
        )
        for event, outcome in zip(events, appended[: len(key_entries)], strict=True):
            if outcome.status is AppendStatus.CONFLICT:  # the registry never reuses a key
                log.error(
                    "key %s of %s is logged with another statement",
                    event.kind,
                    event.device.device_id,
                )
        copied = len(key_entries) + len(journal_entries)
        result.access_entries = _count_journal(journal_entries, appended[len(key_entries) : copied])
        points: list[SamplePoint] = []
        reading_outcomes = appended[copied:]
        for (msg, a), outcome in zip(admitted, reading_outcomes, strict=True):
            if outcome.status is AppendStatus.REFUSED:
                detail = f"the key of {a.reading.device_id} is revoked (entry {outcome.index})"
                refused.append(
                    QuarantineRecord(now_ms, msg.topic, Reason.REVOKED_DEVICE, detail, msg.payload)
                )
                continue
            if outcome.status is AppendStatus.CONFLICT:
                refused.append(
                    QuarantineRecord(
                        now_ms,
                        msg.topic,
                        Reason.SEQUENCE_CONFLICT,
                        f"{a.reading.device_id}#{a.reading.seq} is recorded with other bytes",
                        msg.payload,
                    )
                )
                continue
            status.verified(a.reading, now_ms)
            if outcome.status is AppendStatus.APPENDED:
                result.accepted += 1
                result.recorded.append((a.reading.device_id, a.reading.seq, outcome.index))
            else:
                result.duplicates += 1
            points.extend(sample_points(a.reading, a.patient_id, outcome.index))
        try:
            self.store.write(points)
        except Exception as exc:
            raise StoreWriteFailed(result.accepted) from exc
        result.quarantined = self.quarantine.add(refused)
        for record in refused:
            result.rejected[record.reason] += 1
            log.debug(
                "quarantined message on %r: %s (%s)", record.topic, record.reason, record.detail
            )
        return result

    def flush_status(self) -> None:
        """Write the device news gathered since the last flush: one upsert per device, however
        many batches (the ingestor flushes at every seal, about once a second, and at stop).
        Device states are advisory (the ledger is the record): a failure to keep them is
        logged, and ingest goes on."""
        status, self._status = self._status, StatusBatch()
        if self.device_status is None:
            return
        try:
            self.device_status.record(status)
        except sqlite3.Error as exc:
            log.warning("device status not recorded: %r", exc)

    def _pending_key_events(self) -> list[KeyEvent]:
        """Registrations and revocations not in the ledger yet; they go in before readings."""
        seq = self.ledger.log.meta(REGISTRY_CURSOR) or 0
        events: list[KeyEvent] = []
        while page := self._key_events.events_after(seq):
            events.extend(page)
            seq = page[-1].seq
        return events

    def _pending_journal(self, now_ms: int, result: BatchResult) -> Pending | None:
        """The access journal's rows not in the ledger yet; None when there are none to copy
        (no journal, nothing new, or a journal that cannot be read now: it is read again next
        time, and its rows keep their order)."""
        if self._journal is None:
            return None
        try:
            pending = self._journal.pending(self.ledger, now_ms)
        except JournalError as exc:
            log.warning("the access journal cannot be read (%s); copying it later", exc)
            result.journal_unreadable = True
            return None
        return pending if pending is not None and pending.entries else None

    def copy_journal(self, now_ms: int) -> BatchResult:
        """Copy the access journal's new rows into the ledger without readings (on the
        ingestor's timer: a quiet ward's accesses are sealed with the next block too)."""
        result = BatchResult()
        pending = self._pending_journal(now_ms, result)
        if pending is not None:
            outcomes = self.ledger.append(pending.entries, meta=pending.meta)
            result.access_entries = _count_journal(pending.entries, outcomes)
        return result

    def seal(self, now_ms: int) -> Block | None:
        self.flush_status()
        return self.ledger.seal(now_ms)


def _count_journal(entries: Sequence[NewEntry], outcomes: Sequence[AppendResult]) -> int:
    """How many journal rows were newly logged; a conflict means the ledger holds other bytes
    under a journal's key, which a journal (append-only, keyed by its own id) never makes."""
    appended = 0
    for entry, outcome in zip(entries, outcomes, strict=True):
        if outcome.status is AppendStatus.APPENDED:
            appended += 1
        elif outcome.status is AppendStatus.CONFLICT:
            log.error("access-journal entry %s is logged with other bytes", entry.key)
    return appended


def _statement(event: KeyEvent) -> DeviceKeyStatement:
    device = event.device
    if event.kind == "registered":
        return DeviceKeyStatement(
            EntryKind.DEVICE_REGISTERED, device.device_id, device.key, device.patient_id
        )
    return DeviceKeyStatement(EntryKind.DEVICE_REVOKED, device.device_id, device.key, None)
