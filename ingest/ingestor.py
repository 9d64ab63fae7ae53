"""The ingestor: MQTT in, durable batches out, acks after commit, blocks sealed on a timer.

One asyncio task receives and batches; check worker processes verify each batch
(:class:`~ingest.check_pool.CheckPool`) while one writer thread, which owns every database,
records the batch before (:class:`~ingest.pipeline.Pipeline`). A batch is acknowledged to
the broker only after the writer returns, in the order the batches arrived. Blocks are sealed every ``seal_interval_s`` or sooner
when ``seal_every`` entries wait; before each seal the access journal's new rows are copied in
(:meth:`~ingest.pipeline.Pipeline.copy_journal`), so accesses are sealed even when no
reading arrives. On stop, everything received is flushed, acknowledged and
sealed before the connection closes. If the broker or a store fails, nothing unflushed is
acknowledged: the broker keeps it, and the ingestor reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TypeVar

from ingest.check_pool import CheckPool
from ingest.checks import Verdict
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import InboundMessage, MqttError, MqttSource, SourceConfig
from ingest.pipeline import BatchResult, Pipeline, StoreWriteFailed
from ledger.blocks import Block
from ledger.witnessing import Checkpointed, LedgerAccess, WitnessClient

log = logging.getLogger("vitaltrail.ingest")

T = TypeVar("T")


@dataclass(frozen=True)
class IngestConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    batch_max: int = 2000
    batch_wait_s: float = 0.02
    seal_interval_s: float = 1.0
    seal_every: int = 1000  # under load, about one block per written batch
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 15.0
    sequence_poll_s: float = 0.02  # shared log: how often the sequencer looks for submissions
    compact_interval_s: float = 60.0  # store roll-up and raw retention; quarantine expiry


class StorageError(Exception):
    """A batch could not be made durable (disk, database, store server)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ingestor:
    def __init__(
        self,
        config: IngestConfig,
        pipeline: Pipeline,
        metrics: IngestMetrics | None = None,
        *,
        on_durable: Callable[[BatchResult, int], None] | None = None,
        on_sealed: Callable[[Block, int], None] | None = None,
        check_pool: CheckPool | None = None,
        witnesses: WitnessClient | None = None,
    ) -> None:
        self.config = config
        self._check_pool = check_pool
        self.pipeline = pipeline
        self.metrics = metrics or IngestMetrics()
        self._on_durable = on_durable
        self._on_sealed = on_sealed
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitaltrail-writer")
        self._seal_now = asyncio.Event()
        self._witnesses = witnesses
        self._witnessing: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set; then flush, seal and return."""
        sealer = asyncio.create_task(self._seal_loop(stop))
        compactor = asyncio.create_task(self._compact_loop(stop))
        sequencer = None
        if self.pipeline.ledger.shared:
            sequencer = asyncio.create_task(self._sequence_loop(stop))
        delay = self.config.reconnect_min_s
        try:
            while not stop.is_set():
                try:
                    async with MqttSource(self.config.source) as source:
                        self.connected.set()
                        self.metrics.connected.set(1)
                        delay = self.config.reconnect_min_s
                        await self._consume(source, stop)
                except (MqttError, StorageError) as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from exc  # a cancel, not a broker error
                    cause = "storage" if isinstance(exc, StorageError) else "broker"
                    self.metrics.interruptions.labels(cause=cause).inc()
                    log.warning("ingest interrupted: %s; retrying in %.1fs", exc, delay)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await stop.wait()
                    delay = min(delay * 2, self.config.reconnect_max_s)
                finally:
                    self.connected.clear()
                    self.metrics.connected.set(0)
        finally:
            background = [sealer, compactor, *([sequencer] if sequencer else [])]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.shield(self._seal())
            await self._finish_witnessing()
            self.close()

    def close(self) -> None:
        """Stop the writer thread and the check workers (idempotent; :meth:`run` calls it)."""
        self._writer.shutdown(wait=True)
        if self._check_pool is not None:
            self._check_pool.close()

    async def _consume(self, source: MqttSource, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        writing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                receiving = asyncio.create_task(
                    source.next_batch(self.config.batch_max, self.config.batch_wait_s)
                )
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    await asyncio.gather(receiving, return_exceptions=True)
                    break
                writing = await self._step(source, receiving.result(), writing)
            # Graceful stop: what was received is made durable and acknowledged.
            writing = await self._step(source, source.take_all(), writing)
        finally:
            stopping.cancel()
            if writing is not None:  # let the last write finish; its batch is acked or redelivered
                (outcome,) = await asyncio.gather(asyncio.shield(writing), return_exceptions=True)
                if isinstance(outcome, Exception):
                    log.warning("the last batch was not made durable: %s", outcome)

    async def _step(
        self, source: MqttSource, batch: list[InboundMessage], previous: asyncio.Task[None] | None
    ) -> asyncio.Task[None] | None:
        """Check ``batch`` while the previous batch is written, then start writing this one.

        Writes run one at a time and in arrival order, so acknowledgements keep that order.
        """
        if not batch:
            if previous is not None:
                await previous
            return None
        self.metrics.received.inc(len(batch))
        now_ms = _now_ms()
        verdicts = await self._check(batch, now_ms)
        if previous is not None:
            await previous
        return asyncio.create_task(self._write(source, batch, now_ms, verdicts))

    async def _check(self, batch: list[InboundMessage], now_ms: int) -> list[Verdict] | None:
        if self._check_pool is None:
            return None  # the pipeline checks on the writer thread
        try:
            return await self._check_pool.check([(m.topic, m.payload) for m in batch], now_ms)
        except BrokenProcessPool as exc:
            raise StorageError("a check worker process died") from exc

    async def _write(
        self,
        source: MqttSource,
        batch: list[InboundMessage],
        now_ms: int,
        verdicts: list[Verdict] | None,
    ) -> None:
        try:
            result = await self._in_writer(self.pipeline.process, batch, now_ms, verdicts)
        except Exception as exc:
            if isinstance(
                exc, StoreWriteFailed
            ):  # logged now: counted now, not as duplicates later
                self.metrics.accepted.inc(exc.appended)
                exc = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise StorageError(f"could not make a batch of {len(batch)} durable: {exc!r}") from exc
        source.ack(batch)
        done_ns = time.time_ns()
        self._record(result, batch, done_ns)
        if self.pipeline.unsealed >= self.config.seal_every:
            self._seal_now.set()
        if self._on_durable is not None:
            self._on_durable(result, done_ns)

    def _record(self, result: BatchResult, batch: list[InboundMessage], done_ns: int) -> None:
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.accepted.inc(result.accepted)
        m.duplicates.inc(result.duplicates)
        for reason, n in result.rejected.items():
            m.rejected.labels(reason=reason.value).inc(n)
        m.quarantine_truncated.inc(result.quarantined.truncated)
        m.quarantine_evicted.labels(cause="size").inc(result.quarantined.evicted)
        m.quarantine_bytes.set(self.pipeline.quarantine.stored_bytes)
        self._record_journal(result)
        for msg in batch[:: max(1, len(batch) // 32)]:  # a sample keeps the histogram cheap
            m.durable_latency.observe((done_ns - msg.received_ns) / 1e9)
        m.ledger_size.set(self.pipeline.ledger.size)

    def _record_journal(self, result: BatchResult) -> None:
        self.metrics.access_entries.inc(result.access_entries)
        if result.journal_unreadable:
            self.metrics.journal_unreadable.inc()

    async def _seal_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.seal_interval_s):
                    await self._seal_now.wait()
            self._seal_now.clear()
            try:
                await self._seal()
            except Exception:
                log.exception("sealing failed; retrying at the next interval")

    async def _compact_loop(self, stop: asyncio.Event) -> None:
        """Roll the store's complete minutes up and drop raw samples past their retention;
        delete quarantine records past their age."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.compact_interval_s):
                    await stop.wait()
            try:
                await self._in_writer(self.pipeline.store.compact, _now_ms())
            except Exception as exc:
                log.warning("store compaction failed (%r); retrying next interval", exc)
            await self._expire_quarantine()

    async def _expire_quarantine(self) -> None:
        quarantine = self.pipeline.quarantine
        try:
            expired = await self._in_writer(quarantine.expire, _now_ms())
        except Exception as exc:
            log.warning("quarantine expiry failed (%r); retrying next interval", exc)
            return
        self.metrics.quarantine_evicted.labels(cause="age").inc(expired)
        self.metrics.quarantine_bytes.set(quarantine.stored_bytes)

    async def _sequence_loop(self, stop: asyncio.Event) -> None:
        """On a shared log: append what other ingestors submitted, if this one is the sequencer."""
        while not stop.is_set():
            try:
                appended = await self._in_writer(self.pipeline.ledger.sequence_pending)
            except Exception as exc:
                log.warning("sequencing failed (%r); retrying in 1s", exc)
                await asyncio.sleep(1)
                continue
            if appended == 0:
                await asyncio.sleep(self.config.sequence_poll_s)

    async def _seal(self) -> None:
        try:
            self._record_journal(await self._in_writer(self.pipeline.copy_journal, _now_ms()))
        except Exception as exc:  # the ledger refused: seal what it holds, copy next time
            log.warning("copying the access journal failed (%r); retrying next interval", exc)
        block = await self._in_writer(self.pipeline.seal, _now_ms())
        if block is not None:
            self.metrics.blocks_sealed.inc()
            if self._on_sealed is not None:
                self._on_sealed(block, time.time_ns())
            self._request_cosignatures(block)

    def _request_cosignatures(self, block: Block) -> None:
        """Send the new checkpoint to the witnesses, unless a round is still out: the next
        block's checkpoint then goes, with a proof from what each witness saw last."""
        if self._witnesses is None or (self._witnessing and not self._witnessing.done()):
            return
        self._witnessing = asyncio.create_task(self._witness(block))
        self._witnessing.add_done_callback(_log_failure)

    async def _witness(self, block: Block) -> None:
        assert self._witnesses is not None
        ledger = self.pipeline.ledger
        access = LedgerAccess(
            witnessed_size=lambda name: self._in_writer(ledger.blocks.witnessed_size, name),
            consistency_proof=lambda old, new: self._in_writer(ledger.consistency_proof, old, new),
            store_cosignature=lambda height, name, line: self._in_writer(
                ledger.blocks.add_cosignature, height, name, line
            ),
        )
        checkpoint = Checkpointed(block.height, block.tree_size, block.note)
        cosigned = await self._witnesses.cosign(checkpoint, access)
        for endpoint in self._witnesses.endpoints:
            name = endpoint.key.name
            counter = (
                self.metrics.cosignatures if name in cosigned else self.metrics.witness_failures
            )
            counter.labels(witness=name).inc()

    async def _finish_witnessing(self) -> None:
        """Give the last round a few seconds to land, then stop (the checkpoints stay sealed)."""
        if self._witnessing is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(asyncio.shield(self._witnessing), return_exceptions=True)
            self._witnessing.cancel()
            await asyncio.gather(self._witnessing, return_exceptions=True)
        if self._witnesses is not None:
            await self._witnesses.close()

    async def _in_writer(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("witnessing failed: %r", task.exception())
