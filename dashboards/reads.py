"""The API's reads run on a few threads of their own, never on the event loop.

In `vitaltrail ingest --serve-api` and the demo the API shares the ingestor's event loop. A
SQLite query is synchronous: run there, each one stops ingest and every other request for
as long as it takes (eight clients repeating a 0.3 s series query held ``/healthz`` and the
ingestor up for seconds). So every handler that reads the ledger, the store or the registry
hands its read to a :class:`ReadPool`: a fixed number of threads, each with its own
connections (opened on the thread's first read, closed with the pool), so no connection is
ever shared between threads. SQLite releases the GIL while it steps through a query.

The queue in front of the threads is bounded: past ``max_pending`` reads running or waiting,
a request is refused at once with 503 and ``Retry-After`` (counted in
``vitaltrail_api_reads_refused_total``) rather than piling up behind the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request

from clinical.alert_store import AlertStore
from clinical.documented import DocumentedStore
from devices.registry import DeviceRegistry
from fhirserver.index import IndexReader
from ingest.device_status import DeviceStatusStore
from ingest.store import TimeSeriesStore
from ledger.ledger import LedgerReader

log = logging.getLogger("vitaltrail.api")

T = TypeVar("T")


class _Closeable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True)
class Readers:
    """One thread's own connections."""

    ledger: LedgerReader
    store: TimeSeriesStore
    registry: DeviceRegistry
    observations: IndexReader  # the FHIR observation index (fhirserver.index)
    documented: DocumentedStore  # what staff document for NEWS2 (written here too)
    alerts: AlertStore  # the open alerts and their history (written here too)
    device_status: DeviceStatusStore  # each device's technical state (the ingestor writes it)

    def close(self) -> None:
        part: _Closeable
        for part in (
            self.ledger,
            self.store,
            self.registry,
            self.observations,
            self.documented,
            self.alerts,
            self.device_status,
        ):
            try:
                part.close()
            except Exception as exc:  # closing the rest matters more
                log.warning("closing an API reader failed: %r", exc)


def _lower_priority(nice: int) -> None:
    """Give this thread (Linux: threads have their own nice value) ``nice`` more than the
    process's, so that on a busy machine the ingestor's threads and check workers win the CPU
    and reads take what is left. Elsewhere it would renice the whole process: skipped."""
    if nice <= 0 or sys.platform != "linux":
        return
    try:
        os.setpriority(
            os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice
        )
    except OSError as exc:
        log.warning("could not lower the API read threads' priority: %s", exc)


class ReadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "vitaltrail_api_reads_refused",
            "API requests refused with 503 because max_pending reads were queued",
            registry=registry,
        )
        self.pending = Gauge(
            "vitaltrail_api_reads_pending", "API reads running or waiting", registry=registry
        )


class ReadPool:
    """``threads`` reader threads; :meth:`run` awaits one read on one of them."""

    def __init__(
        self,
        open_readers: Callable[[], Readers],
        *,
        threads: int,
        max_pending: int,
        metrics: ReadMetrics,
        nice: int = 0,
    ) -> None:
        if threads < 1 or max_pending < threads:
            raise ValueError("a read pool needs a thread, and room to queue one read per thread")
        self._open_readers = open_readers
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="vitaltrail-api-read")
        self._local = threading.local()
        self._opened: list[Readers] = []
        self._lock = threading.Lock()
        self._pending = 0
        self.max_pending = max_pending
        self.metrics = metrics
        self._nice = nice

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, read: Callable[[Readers], T]) -> T:
        """``read(readers)`` on a reader thread, with that thread's readers."""
        with self._lock:
            if self._pending >= self.max_pending:
                self.metrics.refused.inc()
                raise HTTPException(
                    503, "the API is busy with other reads: retry", headers={"Retry-After": "1"}
                )
            self._pending += 1
            self.metrics.pending.set(self._pending)
        try:
            future = self._executor.submit(self._read, read)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)  # also when cancelled while it waited
        return await asyncio.wrap_future(future)

    def _finished(self, _: Future[T] | None) -> None:
        with self._lock:
            self._pending -= 1
            self.metrics.pending.set(self._pending)

    def _read(self, read: Callable[[Readers], T]) -> T:
        readers: Readers | None = getattr(self._local, "readers", None)
        if readers is None:
            _lower_priority(self._nice)
            readers = self._open_readers()
            self._local.readers = readers
            with self._lock:
                self._opened.append(readers)
        return read(readers)

    def close(self) -> None:
        """Wait for the reads under way, then close every thread's connections."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            opened, self._opened = self._opened, []
        for readers in opened:
            readers.close()


def read_pool(request: Request) -> ReadPool:
    """The app's read pool (``app.state.reads``), as routes and gates take it."""
    reads: ReadPool = request.app.state.reads
    return reads
