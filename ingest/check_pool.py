"""Admission checks in worker processes: the CPU-bound half of ingest, off the event loop's GIL.

COSE parsing, Ed25519 verification and CBOR decoding cost more per message than everything
else the ingestor does, and in one process they compete for the GIL with the MQTT client.
A :class:`CheckPool` runs :class:`~ingest.checks.BatchChecker` in ``workers`` processes,
each with its own read-only view of the device registry; with ``workers=0`` the ingestor
checks on its writer thread instead (simpler, slower). See docs/benchmarks.md for both.

The workers are replaced once one of them has grown past ``max_worker_rss_mib``: cbor2's C
decoder leaks memory on some malformed input (agronholm/cbor2#257; up to kilobytes a message,
what the input's lengths declared), so a flood of junk would otherwise grow each worker without
bound (1.4 GiB each over a 1M-message hostile backlog). Each answer carries the worker's peak
RSS, so the bound holds whatever leaks; good traffic never reaches it. A fresh pool is started
and warmed up while the old one still checks; the old one is shut down once the new one has
answered.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from devices.registry import DeviceRegistry
from ingest.checks import BatchChecker, Limits, RegistryCache, Verdict

log = logging.getLogger("vitaltrail.ingest")

# Each worker process holds one checker, made by the pool's initializer. This is state of
# the worker process, not of the ingestor: the pool object owns the processes.
_checker: BatchChecker | None = None


def _exit_with_parent(parent_pid: int) -> None:
    """A worker holds both ends of its task pipe, so it never sees EOF when the ingestor is
    killed (SIGKILL): it would wait forever. It leaves when its parent is gone instead."""
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(0)


def _start_worker(registry_path: Path, topic_root: str, limits: Limits, parent_pid: int) -> None:
    global _checker
    # Ctrl-C reaches the whole process group; the ingestor decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    registry = DeviceRegistry(registry_path)
    _checker = BatchChecker(RegistryCache(registry.by_kid), topic_root, limits)


def _ready() -> int:
    return os.getpid()


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


def _check_in_worker(
    messages: Sequence[tuple[str, bytes]], now_ms: int
) -> tuple[list[Verdict], float]:
    """The verdicts, and this worker's peak RSS (MiB) after them."""
    assert _checker is not None, "worker started without its initializer"
    return _checker.check(messages, now_ms), _peak_rss_mib()


class CheckPool:
    def __init__(
        self,
        workers: int,
        registry_path: Path,
        topic_root: str,
        limits: Limits | None = None,
        *,
        max_worker_rss_mib: float = 192.0,
    ) -> None:
        self.workers = workers
        self.max_worker_rss_mib = max_worker_rss_mib
        self._initargs = (registry_path, topic_root, limits or Limits(), os.getpid())
        self._executor = self._new_executor()
        self._largest_mib = 0.0  # the current workers' largest peak RSS
        self._fresh: ProcessPoolExecutor | None = None  # the next workers, warming up
        self._warming: asyncio.Task[None] | None = None
        self.generation = 0  # how many times the workers were replaced

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=self._initargs,
        )

    async def check(self, messages: Sequence[tuple[str, bytes]], now_ms: int) -> list[Verdict]:
        """Check a batch, split evenly over the workers; verdicts come back in order."""
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // self.workers) or 1
        chunks = [list(messages[i : i + size]) for i in range(0, len(messages), size)]
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _check_in_worker, chunk, now_ms)
                for chunk in chunks
            )
        )
        self._largest_mib = max(self._largest_mib, *(rss for _, rss in parts))
        self._recycle()
        return [verdict for verdicts, _ in parts for verdict in verdicts]

    def _recycle(self) -> None:
        """Once a worker is past its memory budget, warm a fresh pool up in the background;
        switch to it once it has answered (at the end of a later call, never within one)."""
        if self._warming is not None and self._warming.done():
            warming, fresh = self._warming, self._fresh
            self._warming = self._fresh = None
            assert fresh is not None
            if warming.cancelled() or warming.exception() is not None:
                log.warning("fresh check workers did not start: %r", warming)
                fresh.shutdown(wait=False, cancel_futures=True)
                return  # the next call tries again
            old, self._executor = self._executor, fresh
            old.shutdown(wait=False)  # nothing is pending on it: check() awaited its parts
            self._largest_mib = 0.0
            self.generation += 1
            log.info("check workers replaced (generation %d)", self.generation)
        elif self._warming is None and self._largest_mib > self.max_worker_rss_mib:
            self._fresh = self._new_executor()
            self._warming = asyncio.get_running_loop().create_task(self._warm(self._fresh))

    async def _warm(self, fresh: ProcessPoolExecutor) -> None:
        loop = asyncio.get_running_loop()  # one task per worker starts every process
        await asyncio.gather(*(loop.run_in_executor(fresh, _ready) for _ in range(self.workers)))

    def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        if self._fresh is not None:
            self._fresh.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
