"""The check pool replaces its worker processes once one outgrows its memory budget (a C
decoder's leak on junk stays bounded), without losing or reordering a verdict."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from devices.publisher import readings_topic
from ingest.check_pool import CheckPool
from ingest.checks import Admitted, Rejected
from ingest.reasons import Reason
from tests.stack import now_ms, register_devices, signed, wait_until

TOPIC_ROOT = "t/vitaltrail/v1"


async def test_workers_are_replaced_once_past_their_memory_budget(tmp_path: Path) -> None:
    signers = register_devices(tmp_path, 1)
    device_id, signer = next(iter(signers.items()))
    topic = readings_topic(TOPIC_ROOT, device_id)
    pool = CheckPool(2, tmp_path / "registry.db", TOPIC_ROOT, max_worker_rss_mib=1)
    try:
        seq = 0
        for _ in range(6):
            batch = [(topic, b"\xbf\x01\xa1junk" + bytes([i])) for i in range(8)]
            batch.insert(3, (topic, signed(device_id, signer, seq)))
            verdicts = await pool.check(batch, now_ms())
            assert isinstance(verdicts[3], Admitted)
            assert verdicts[3].reading.seq == seq
            assert all(
                isinstance(v, Rejected) and v.reason is Reason.MALFORMED_COSE
                for i, v in enumerate(verdicts)
                if i != 3
            )
            seq += 1
            if pool.generation:
                break
            await wait_until(lambda: pool._warming is None or pool._warming.done(), 30)
        assert pool.generation == 1
        # the old workers exit: only the current ones (and none warming) are left
        await wait_until(
            lambda: len(multiprocessing.active_children()) == 2, 30, "old workers gone"
        )
        verdicts = await pool.check([(topic, signed(device_id, signer, seq))], now_ms())
        assert isinstance(verdicts[0], Admitted)
    finally:
        pool.close()
    assert multiprocessing.active_children() == []


async def test_within_their_budget_the_workers_stay(tmp_path: Path) -> None:
    signers = register_devices(tmp_path, 1)
    device_id, signer = next(iter(signers.items()))
    topic = readings_topic(TOPIC_ROOT, device_id)
    pool = CheckPool(1, tmp_path / "registry.db", TOPIC_ROOT, max_worker_rss_mib=4096)
    try:
        for seq in range(5):
            batch = [(topic, signed(device_id, signer, seq)), (topic, b"\xbf\x01\xa1junk")]
            verdict, refused = await pool.check(batch, now_ms())
            assert isinstance(verdict, Admitted)
            assert isinstance(refused, Rejected)
        assert pool.generation == 0
        assert pool._warming is None
    finally:
        pool.close()
