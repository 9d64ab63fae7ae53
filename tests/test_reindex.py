"""`vitaltrail reindex`: a dropped store rebuilt from the ledger holds exactly what ingest wrote."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx2
import pytest

from ingest.store import TimeSeriesStore
from tests.populated import populate
from vitaltrail.cli import main
from vitaltrail.influxdb import Influxd
from vitaltrail.runtime import open_store
from vitaltrail.settings import Settings


def _snapshot(store: TimeSeriesStore) -> tuple[object, ...]:
    latest = store.latest()
    series = [store.series(v.patient_id, v.code, 0, 2**50, 60_000) for v in latest]
    return store.count(), store.patients(), latest, series


@pytest.mark.parametrize("backend", ["sqlite", "influxdb"])
def test_a_dropped_store_is_rebuilt_from_the_ledger(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra: dict[str, object] = {}
    if backend == "influxdb":
        server: Influxd = request.getfixturevalue("influxd")
        extra = {"influx_url": server.url, "influx_database": f"t_{uuid.uuid4().hex[:12]}"}
        for name, value in extra.items():
            monkeypatch.setenv(f"VITALTRAIL_{name.upper()}", str(value))
    settings = populate(tmp_path / "data", patients=3, readings=20, blocks=2, **extra)
    store = open_store(settings, read_only=True)
    before = _snapshot(store)
    store.close()
    assert before[0] == 3 * 20 * 3  # three samples per reading

    _drop(settings)
    store = open_store(settings)
    assert store.count() == 0
    store.close()

    assert main(["--data-dir", str(settings.data_dir), "reindex"]) == 0
    store = open_store(settings, read_only=True)
    assert _snapshot(store) == before
    store.close()
    assert main(["--data-dir", str(settings.data_dir), "reindex"]) == 0  # again: idempotent
    store = open_store(settings, read_only=True)
    assert store.count() == before[0]
    store.close()


def _drop(settings: Settings) -> None:
    if settings.influx_url:
        query = {"q": f'DROP DATABASE "{settings.influx_database}"'}
        httpx2.post(settings.influx_url + "/query", params=query).raise_for_status()
    else:
        for path in settings.data_dir.glob("store.db*"):
            path.unlink()
