"""Device technical state: kept by the ingestor (ingest/device_status.py), batched per device,
and turned into technical alerts by the engine (clinical/alert_engine.py)."""

from __future__ import annotations

from pathlib import Path

from clinical.alert_engine import WardDevice, active_devices, evaluate_ward
from clinical.alert_store import AlertStore
from clinical.alerts import AlertConfig, DeviceLimits, Kind
from clinical.documented import DocumentedStore
from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.reading import Reading, encode_reading
from devices.registry import DeviceRegistry
from ingest.device_status import DeviceStatusStore, StatusBatch
from ingest.reasons import Reason
from ingest.store import MINUTE_MS
from tests.stack import forged, now_ms, vitals
from tests.test_ingest_pipeline import _msg, _pipeline

T0 = 1_763_700_000_000


def _reading(device: str, seq: int, at_ms: int, battery: int | None) -> Reading:
    return Reading(device, seq, vitals(at_ms), battery)


def test_a_batch_is_one_upsert_per_device_and_older_news_never_wins(tmp_path: Path) -> None:
    store = DeviceStatusStore(tmp_path / "status.db")
    batch = StatusBatch()
    for seq in range(1000):  # 1000 readings of 4 devices, the latest battery last
        batch.verified(_reading(f"d{seq % 4}", seq, T0 + seq, 100 - seq // 10), T0 + 5000)
    batch.failed("d0", T0 + 4000, Reason.BAD_SIGNATURE.value)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # what the database is asked
    store.record(batch)
    store._db.set_trace_callback(None)
    upserts = [s for s in statements if s.lstrip().startswith("INSERT INTO device_status")]
    assert len(upserts) == 4
    got = store.statuses(T0 + 5000, 10 * MINUTE_MS)
    assert {d: (s.last_seen_ms, s.battery_pct) for d, s in got.items()} == {
        "d0": (T0 + 5000, 1),  # seq 996: 100 - 99
        "d1": (T0 + 5000, 1),
        "d2": (T0 + 5000, 1),
        "d3": (T0 + 5000, 1),
    }
    assert got["d0"].battery_time_ms == T0 + 996
    # a replay of an old reading, later: seen again, but its battery is older than the kept one
    late = StatusBatch()
    late.verified(_reading("d0", 3, T0, 99), T0 + 9000)
    store.record(late)
    d0 = store.statuses(T0 + 9000, 10 * MINUTE_MS, ["d0"])["d0"]
    assert (d0.last_seen_ms, d0.battery_pct, d0.battery_time_ms) == (T0 + 9000, 1, T0 + 996)
    assert (d0.signature_failures, d0.last_failure_reason) == (1, "bad_signature")
    store.close()


def test_failures_are_counted_over_the_window_and_in_total(tmp_path: Path) -> None:
    store = DeviceStatusStore(tmp_path / "status.db")
    for minute in (0, 5, 12, 13, 13):
        batch = StatusBatch()
        batch.failed("band", T0 + minute * MINUTE_MS, "bad_signature")
        store.record(batch)
    now = T0 + 14 * MINUTE_MS
    band = store.statuses(now, 10 * MINUTE_MS)["band"]
    assert (band.signature_failures, band.recent_failures) == (5, 4)  # minutes 5, 12, 13, 13
    assert band.last_failure_ms == T0 + 13 * MINUTE_MS
    assert band.last_seen_ms is None  # a forger's failures are not a sign of life
    assert store.statuses(now + 60 * MINUTE_MS, 10 * MINUTE_MS)["band"].recent_failures == 0
    store.close()


def test_the_pipeline_counts_a_bad_signature_against_the_device_the_key_names(
    tmp_path: Path,
) -> None:
    status = DeviceStatusStore(tmp_path / "status.db")
    pipeline, signer = _pipeline(tmp_path, status)
    now = now_ms()
    genuine = sign1(signer, encode_reading(_reading("band-1", 0, now, 64)))
    forgeries = [
        forged(sign1(signer, encode_reading(_reading("band-1", seq, now, 100))))
        for seq in (1, 2, 3)
    ]  # the device's kid, a signature that does not verify
    result = pipeline.process(
        [_msg(genuine, 1), *(_msg(f, i + 2) for i, f in enumerate(forgeries))], now
    )
    assert (result.accepted, result.rejected) == (1, {Reason.BAD_SIGNATURE: 3})
    assert status.statuses(now, 10 * MINUTE_MS) == {}  # gathered until the next seal
    pipeline.seal(now)
    band = status.statuses(now, 10 * MINUTE_MS)["band-1"]
    assert (band.signature_failures, band.recent_failures) == (3, 3)
    assert (band.last_failure_ms, band.last_failure_reason) == (now, "bad_signature")
    assert (band.last_seen_ms, band.battery_pct) == (now, 64)  # the forged 100 % is not believed
    garbage = pipeline.process([_msg(b"\xd2\x84", 9)], now + 1)  # names no device: not counted
    assert garbage.rejected == {Reason.MALFORMED_COSE: 1}
    pipeline.seal(now + 1)
    assert status.statuses(now + 1, 10 * MINUTE_MS)["band-1"].signature_failures == 3


def test_the_engine_raises_and_resolves_technical_alerts_from_device_states(
    tmp_path: Path,
) -> None:
    status = DeviceStatusStore(tmp_path / "status.db")
    documented, alerts = DocumentedStore(tmp_path / "d.db"), AlertStore(tmp_path / "a.db")
    config = AlertConfig(devices=DeviceLimits())
    devices = [WardDevice("band", "p-1", T0), WardDevice("cuff", "p-1", T0)]
    news = StatusBatch()
    news.verified(_reading("band", 0, T0, 15), T0)
    for _ in range(3):
        news.failed("cuff", T0, "bad_signature")
    status.record(news)

    def round_at(now: int) -> set[tuple[str, Kind, str]]:
        evaluate_ward(
            [],
            documented,
            alerts,
            now,
            config,
            devices=devices,
            statuses=status.statuses(now, config.devices.signature_window_ms),
        )
        return {(k.patient_id, k.kind, k.parameter) for k in alerts.current()}

    # a patient with devices and no vitals yet is evaluated: the cuff never sent a good message
    assert round_at(T0 + 1000) == {
        ("p-1", Kind.BATTERY_LOW, "band"),
        ("p-1", Kind.SIGNATURE_FAILURES, "cuff"),
    }
    # heard from once (or never): how often it reports is not known, so not silent at 2 min
    assert round_at(T0 + config.devices.silent_ms + 1) == round_at(T0 + 1000)
    silent_at = T0 + config.devices.silent_unknown_ms + 1
    assert round_at(silent_at) == {
        ("p-1", Kind.BATTERY_LOW, "band"),
        ("p-1", Kind.DEVICE_SILENT, "band"),
        ("p-1", Kind.DEVICE_SILENT, "cuff"),
    }  # and the failures have left their 10-minute window
    charged = StatusBatch()
    later = silent_at
    charged.verified(_reading("band", 1, later, 95), later)
    charged.verified(_reading("cuff", 0, later, None), later)
    status.record(charged)
    assert round_at(later) == set()  # charged, speaking, failures out of the window
    for store in (status, documented, alerts):
        store.close()


def test_only_active_devices_are_evaluated(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "registry.db")
    registry.register("band", "p-1", DeviceSigner.generate().key)
    registry.register("old", "p-1", DeviceSigner.generate().key)
    registry.revoke("old")
    assert [d.device_id for d in active_devices(registry.all())] == ["band"]
    registry.close()


def test_how_often_a_device_reports_is_learned_from_the_flushes_that_saw_it(
    tmp_path: Path,
) -> None:
    status = DeviceStatusStore(tmp_path / "status.db")
    for second in range(6):  # a band every second; a cuff every 15 minutes
        news = StatusBatch()
        news.verified(_reading("band", second, T0 + second * 1000, None), T0 + second * 1000)
        if second % 2 == 0:
            at = T0 + second * 15 * MINUTE_MS // 2
            news.verified(_reading("cuff", second, at, None), at)
        status.record(news)
    found = status.statuses(T0 + 50 * MINUTE_MS, MINUTE_MS)
    assert found["band"].usual_gap_ms == 1000
    assert found["cuff"].usual_gap_ms == 15 * MINUTE_MS
    late = StatusBatch()  # a message replayed late changes neither its time nor its interval
    late.verified(_reading("band", 9, T0, None), T0)
    status.record(late)
    again = status.statuses(T0, MINUTE_MS)["band"]
    assert (again.last_seen_ms, again.usual_gap_ms) == (T0 + 5000, 1000)
    status.close()
