"""The API's read pool: reads off the event loop, one set of connections per thread, a bounded
queue that answers 503 when full, and every connection closed with the pool."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from dashboards.app import DataSources, create_app
from dashboards.reads import Readers, ReadMetrics, ReadPool
from tests.api_access import Tokens
from tests.populated import populate
from vitaltrail.runtime import data_sources


@pytest.fixture
def sources(tmp_path: Path) -> DataSources:
    return data_sources(populate(tmp_path / "data", patients=1, readings=2))


def pool_of(sources: DataSources, threads: int, max_pending: int) -> ReadPool:
    return ReadPool(
        sources.open_readers,
        threads=threads,
        max_pending=max_pending,
        metrics=ReadMetrics(CollectorRegistry()),
    )


async def test_reads_run_on_their_own_threads_with_their_own_connections(
    sources: DataSources,
) -> None:
    pool = pool_of(sources, threads=2, max_pending=4)
    both_running = threading.Barrier(2, timeout=10)
    loop_thread = threading.get_ident()

    ticked = threading.Event()  # the loop ticked 3 times while the reads held their threads

    def read(r: Readers) -> tuple[int, Readers, int]:
        both_running.wait()  # the two reads block at once: neither runs on the loop
        assert ticked.wait(10), "the event loop stood still while the reads blocked"
        return threading.get_ident(), r, r.ledger.log.stored_size()

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1
            if ticks >= 3:
                ticked.set()

    ticker = asyncio.create_task(tick())
    (t1, r1, size1), (t2, r2, size2) = await asyncio.gather(pool.run(read), pool.run(read))
    ticker.cancel()
    assert loop_thread not in (t1, t2)
    assert t1 != t2
    assert r1.ledger is not r2.ledger
    assert r1.store is not r2.store
    assert r1.registry is not r2.registry
    assert size1 == size2 == 3  # one key registration, two readings
    assert ticks >= 3  # the loop went on while both reads blocked
    await asyncio.to_thread(pool.close)
    with pytest.raises(Exception, match="closed"):
        r1.store.latest()  # closed with the pool
    with pytest.raises(Exception, match="closed"):
        r2.ledger.log.stored_size()


async def test_past_max_pending_a_read_is_refused_with_503_and_counted(
    sources: DataSources,
) -> None:
    registry = CollectorRegistry()
    pool = ReadPool(sources.open_readers, threads=1, max_pending=2, metrics=ReadMetrics(registry))
    release = threading.Event()
    running = [asyncio.create_task(pool.run(lambda _: release.wait(10))) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert pool.pending == 2
    with pytest.raises(HTTPException) as refused:
        await pool.run(lambda _: None)
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}
    assert registry.get_sample_value("vitaltrail_api_reads_refused_total") == 1
    release.set()
    assert await asyncio.gather(*running) == [True, True]
    assert await pool.run(lambda r: r.ledger.log.stored_size()) == 3  # room again
    assert pool.pending == 0
    await asyncio.to_thread(pool.close)


async def test_a_waiting_read_whose_request_went_away_frees_its_place(sources: DataSources) -> None:
    pool = pool_of(sources, threads=1, max_pending=2)
    release = threading.Event()
    busy = asyncio.create_task(pool.run(lambda _: release.wait(10)))
    waiting = asyncio.create_task(pool.run(lambda _: None))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the client disconnected while its read was queued
    await asyncio.gather(waiting, return_exceptions=True)
    assert pool.pending == 1
    release.set()
    await busy
    await asyncio.to_thread(pool.close)


def test_the_app_serves_the_api_s_own_metrics(tmp_path: Path) -> None:
    settings = populate(tmp_path / "data", patients=1, readings=1)
    tokens = Tokens(settings)
    headers = tokens.headers("root", "admin")  # the ledger's status: any token; metrics: admin
    tokens.close()
    with TestClient(create_app(data_sources(settings)), headers=headers) as client:
        assert client.get("/api/v1/ledger").status_code == 200
        text = client.get("/metrics").text
    assert "vitaltrail_api_reads_refused_total 0.0" in text
    assert "vitaltrail_api_reads_pending 0.0" in text


async def test_read_threads_yield_the_cpu_to_ingest(sources: DataSources) -> None:
    pool = ReadPool(
        sources.open_readers,
        threads=1,
        max_pending=1,
        metrics=ReadMetrics(CollectorRegistry()),
        nice=5,
    )
    own = os.getpriority(os.PRIO_PROCESS, 0)  # this (the loop's) thread
    nice = await pool.run(lambda _: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    # Linux threads have a nice value of their own; elsewhere the whole process would change.
    assert nice == (min(19, own + 5) if sys.platform == "linux" else own)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the loop's thread keeps its priority
    await asyncio.to_thread(pool.close)
