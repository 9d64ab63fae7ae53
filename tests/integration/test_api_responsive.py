"""`vitaltrail ingest --serve-api` under a read load: slow queries never stall ingest or health.

The API shares the ingestor's process and event loop. Eight clients repeat a series query
over 300k samples (about 0.3 s of SQLite each) while a prober times ``/healthz`` and a
publisher times each reading from publish to durable in the ledger. Run on the event loop,
the queries queue up in front of both (seconds each); run on threads of their own, they do not.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from devices.publisher import readings_topic
from ingest.sqlite_store import SqliteStore
from ingest.store import SamplePoint
from ledger.ledger import LedgerReader
from tests.api_access import ward_headers
from tests.servers import Mosquitto, free_port
from tests.stack import (
    RawPublisher,
    ingest_process,
    now_ms,
    register_devices,
    signed,
    subscribed,
    wait_for,
)
from vitaltrail.bench.ingest import percentile
from vitaltrail.settings import Settings

pytestmark = pytest.mark.integration

SAMPLES = 300_000
CLIENTS = 8
LOAD_SECONDS = 6.0


def fill_store(path: Path, samples: int, end_ms: int) -> None:
    """One patient's heart rate at 1 Hz, ending now: what one slow series query scans."""
    store = SqliteStore(path)
    start = end_ms - samples * 1000
    points = [
        SamplePoint(
            "ward-1", "ward-1-band", i, 0, i, "8867-4", "/min", 60 + i % 40, start + i * 1000
        )
        for i in range(samples)
    ]
    for k in range(0, samples, 50_000):
        store.write(points[k : k + 50_000])
    store.close()


def timed_get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, float]:
    start = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - start


def test_slow_queries_stall_neither_ingest_nor_healthz(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    data_dir = tmp_path / "data"
    signers = register_devices(data_dir, 1)
    end = now_ms()
    fill_store(data_dir / "store.db", SAMPLES, end)
    http_port = free_port()
    # a clinician of ward-1's care team, with a token of the API's embedded issuer
    settings = Settings(data_dir=data_dir, http_port=http_port)
    headers = ward_headers(settings, ["ward-1"])
    proc = ingest_process(
        data_dir,
        mosquitto.port,
        topic_root,
        "ingest-api-load",
        "--serve-api",
        "--http-port",
        str(http_port),
    )
    stopping = threading.Event()
    series = f"/api/v1/patients/ward-1/vitals/8867-4?start_ms={end - SAMPLES * 1000}&end_ms={end}&bucket_s=60"
    statuses: list[int] = []

    def hammer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        while not stopping.is_set():
            status, _ = timed_get(conn, series, headers)
            statuses.append(status)
        conn.close()

    health: list[float] = []

    def probe_health() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        while not stopping.is_set():
            status, seconds = timed_get(conn, "/healthz")
            assert status == 200
            health.append(seconds)
            time.sleep(0.05)
        conn.close()

    try:
        wait_for(lambda: subscribed(data_dir, "ingest-api-load"), 30, "the ingestor")
        wait_for(lambda: _healthy(http_port), 30, "the API")
        reader = LedgerReader(data_dir / "ledger.db")
        publisher = RawPublisher(mosquitto.port)
        (device_id, signer), seq = next(iter(signers.items())), 0
        topic = readings_topic(topic_root, device_id)

        def publish_and_time() -> float:
            """Seconds from publish until the reading is in the ledger."""
            nonlocal seq
            size = reader.log.stored_size()
            start = time.perf_counter()
            publisher.publish(topic, signed(device_id, signer, seq))
            seq += 1
            wait_for(lambda: reader.log.stored_size() > size, 30, "the reading to be logged")
            return time.perf_counter() - start

        publish_and_time()  # the device key's registration and the first reading
        threads = [threading.Thread(target=hammer) for _ in range(CLIENTS)]
        threads.append(threading.Thread(target=probe_health))
        for t in threads:
            t.start()
        ingest: list[float] = []
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            ingest.append(publish_and_time())
            time.sleep(0.1)
        stopping.set()
        for t in threads:
            t.join(60)
        publisher.close()
        reader.close()
    finally:
        stopping.set()
        proc.terminate()
        proc.wait(30)

    assert statuses, "the clients got answers"
    assert set(statuses) == {200}
    # On the event loop these were seconds (healthz p95 ~2-4 s, ingest p95 ~3 s here).
    assert percentile(health, 95) < 0.5, (sorted(health)[-5:], sorted(ingest)[-5:])
    assert percentile(ingest, 95) < 1.0, sorted(ingest)[-5:]
    assert len(health) >= 10


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        status, _ = timed_get(conn, "/healthz")
        conn.close()
        return status == 200
    except OSError:
        return False
