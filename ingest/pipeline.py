"""One batch of messages, made durable: checks, ledger append, store write, quarantine.

Synchronous, and run on the ingestor's single writer thread, which owns every database
handle. When :meth:`Pipeline.process` returns, the batch is committed everywhere it has to
be, and only then does the ingestor acknowledge it to the broker. The ledger commits first
(it is the record); store writes are idempotent, so a redelivered message whose ledger entry
exists rewrites its samples harmlessly, which also repairs a crash between the two commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest.checks import Admitted, BatchChecker, Limits, Lookup, Rejected, Verdict
from ingest.mqtt_source import InboundMessage
from ingest.quarantine import Quarantine, QuarantineRecord
from ingest.reasons import Reason
from ingest.store import SamplePoint, TimeSeriesStore
from ledger.appends import AppendStatus, NewEntry
from ledger.blocks import Block
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger

log = logging.getLogger("vitaltrail.ingest")


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[Reason] = field(default_factory=Counter)
    recorded: list[tuple[str, int, int]] = field(default_factory=list)  # (device, seq, index)


class Pipeline:
    def __init__(
        self,
        ledger: Ledger,
        store: TimeSeriesStore,
        quarantine: Quarantine,
        lookup: Lookup,
        *,
        topic_root: str,
        limits: Limits | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.quarantine = quarantine
        self.checker = BatchChecker(lookup, topic_root, limits)

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
        for msg, verdict in zip(batch, verdicts, strict=True):
            if isinstance(verdict, Rejected):
                refused.append(
                    QuarantineRecord(now_ms, msg.topic, verdict.reason, verdict.detail, msg.payload)
                )
            else:
                admitted.append((msg, verdict))

        appended = self.ledger.append(
            [
                NewEntry(
                    reading_key(a.reading.device_id, a.reading.seq),
                    LedgerEntry(EntryKind.READING, now_ms, msg.payload).encode(),
                )
                for msg, a in admitted
            ]
        )
        points: list[SamplePoint] = []
        for (msg, a), outcome in zip(admitted, appended, strict=True):
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
            if outcome.status is AppendStatus.APPENDED:
                result.accepted += 1
                result.recorded.append((a.reading.device_id, a.reading.seq, outcome.index))
            else:
                result.duplicates += 1
            points.extend(
                SamplePoint(
                    a.patient_id,
                    a.reading.device_id,
                    a.reading.seq,
                    position,
                    outcome.index,
                    s.code,
                    s.unit,
                    s.value,
                    s.time_ms,
                )
                for position, s in enumerate(a.reading.samples)
            )
        self.store.write(points)
        self.quarantine.add(refused)
        for record in refused:
            result.rejected[record.reason] += 1
            log.debug(
                "quarantined message on %r: %s (%s)", record.topic, record.reason, record.detail
            )
        return result

    def seal(self, now_ms: int) -> Block | None:
        return self.ledger.seal(now_ms)
