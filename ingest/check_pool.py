"""Admission checks in worker processes: the CPU-bound half of ingest, off the event loop's GIL.

COSE parsing, Ed25519 verification and CBOR decoding cost more per message than everything
else the ingestor does, and in one process they compete for the GIL with the MQTT client.
A :class:`CheckPool` runs :class:`~ingest.checks.BatchChecker` in ``workers`` processes,
each with its own read-only view of the device registry; with ``workers=0`` the ingestor
checks on its writer thread instead (simpler, slower). See docs/benchmarks.md for both.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from devices.registry import DeviceRegistry
from ingest.checks import BatchChecker, Limits, RegistryCache, Verdict

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


def _check_in_worker(messages: Sequence[tuple[str, bytes]], now_ms: int) -> list[Verdict]:
    assert _checker is not None, "worker started without its initializer"
    return _checker.check(messages, now_ms)


class CheckPool:
    def __init__(
        self, workers: int, registry_path: Path, topic_root: str, limits: Limits | None = None
    ) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(registry_path, topic_root, limits or Limits(), os.getpid()),
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
        return [verdict for part in parts for verdict in part]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
