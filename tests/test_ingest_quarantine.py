"""The quarantine keeps within its budget: bytes per record, bytes in all, and age."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from pathlib import Path

from ingest.quarantine import (
    MAX_TEXT_CHARS,
    Quarantine,
    QuarantineBudget,
    QuarantineRecord,
)
from ingest.reasons import Reason
from tests.stack import now_ms, wait_until
from vitaltrail.mosquitto import free_port
from vitaltrail.runtime import build_ingest
from vitaltrail.settings import Settings


def junk(i: int, size: int = 1024, received_ms: int = 0) -> QuarantineRecord:
    return QuarantineRecord(
        received_ms or now_ms(),
        "t/dev/readings",
        Reason.MALFORMED_COSE,
        "not CBOR",
        i.to_bytes(4, "big") * (size // 4),
    )


def test_a_big_message_is_kept_cut_with_its_length_and_digest(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.db", budget=QuarantineBudget(keep_bytes=1024))
    big = bytes(range(256)) * 20  # 5,120 bytes
    record = dataclasses.replace(junk(0), payload=big, topic="x" * 9000, detail="d" * 9000)
    stored = q.add([record, junk(1, size=100)])
    assert stored.truncated == 1
    small, kept = q.recent(2)
    assert kept.payload == big[:1024]
    assert kept.size == len(big)
    assert kept.sha256 == hashlib.sha256(big).digest()  # identifies every byte of it
    assert len(kept.topic) == len(kept.detail) == MAX_TEXT_CHARS
    assert small.payload == junk(1, size=100).payload
    assert small.size == 100
    q.close()


def test_past_its_size_budget_the_oldest_records_go(tmp_path: Path) -> None:
    budget = QuarantineBudget(keep_bytes=1024, max_bytes=50_000)
    q = Quarantine(tmp_path / "q.db", budget=budget)
    evicted = 0
    for batch in range(20):
        stored = q.add([junk(batch * 10 + i) for i in range(10)])
        evicted += stored.evicted
        assert q.stored_bytes <= budget.max_bytes
    kept = q.recent(1000)
    assert evicted == 200 - len(kept) > 100
    assert [int.from_bytes(r.payload[:4], "big") for r in kept] == list(
        range(199, 199 - len(kept), -1)
    )  # the newest, and nothing but
    stored_bytes = q.stored_bytes
    q.close()
    assert Quarantine(tmp_path / "q.db", budget=budget).stored_bytes == stored_bytes


def test_records_past_their_age_are_deleted_and_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    q = Quarantine(path, budget=QuarantineBudget(max_age_s=3600))
    now = now_ms()
    for start in range(0, 5000, 500):
        q.add([junk(i, received_ms=now - 2 * 3_600_000) for i in range(start, start + 500)])
    q.add([junk(i, received_ms=now - 60_000) for i in range(3)])
    big = path.stat().st_size + Path(f"{path}-wal").stat().st_size
    assert big > 5_000_000
    assert q.expire(now) == 5000
    assert q.counts() == {"malformed_cose": 3}
    assert q.expire(now) == 0
    q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < 500_000, "freed pages go back to the file system"
    assert q.stored_bytes == Quarantine(path).stored_bytes > 0
    q.close()


def test_a_quarantine_made_before_digests_opens_and_counts_its_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE quarantine (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
        topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, size INTEGER NOT NULL,
        payload BLOB NOT NULL);
        INSERT INTO quarantine VALUES (1, 1, 't', 'oversize', 'big', 65536, zeroblob(65536));"""
    )
    old.close()
    q = Quarantine(path, budget=QuarantineBudget(max_bytes=10_000))
    assert q.stored_bytes > 65536
    (kept,) = q.recent()
    assert kept.sha256 is None
    assert q.add([junk(1)]).evicted == 1  # the old 64 KiB row was over the new budget
    assert [r.sha256 is not None for r in q.recent()] == [True]
    q.close()


async def test_the_ingestor_expires_old_records_on_its_timer(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        mqtt_port=free_port(),  # nothing listens: ingest retries, housekeeping goes on
        check_workers=0,
        quarantine_max_age_days=1,
    )
    runtime = build_ingest(settings)
    runtime.quarantine.add([junk(i, received_ms=now_ms() - 2 * 86_400_000) for i in range(7)])
    runtime.quarantine.add([junk(7)])
    ingestor = runtime.ingestor
    ingestor.config = dataclasses.replace(ingestor.config, compact_interval_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    evicted = "vitaltrail_quarantine_evicted_total"
    try:
        await wait_until(
            lambda: runtime.metrics.sample(evicted, {"cause": "age"}) == 7,
            10,
            "old records expired",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        runtime.close()
    q = Quarantine(settings.quarantine_path, read_only=True)
    assert q.counts() == {"malformed_cose": 1}
    q.close()
