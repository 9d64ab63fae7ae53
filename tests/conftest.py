"""Shared fixtures. Integration tests get a real Mosquitto, started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.influx_store import InfluxStore
from ingest.sqlite_store import SqliteStore
from ingest.store import TimeSeriesStore
from ledger.database import Database
from tests.postgres import Postgres
from tests.servers import Mosquitto
from vitaltrail.influxdb import Influxd


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The ledger's database, once on SQLite and once on PostgreSQL: one suite, two backends."""
    if request.param == "sqlite":
        db = Database.sqlite(tmp_path / "ledger.db")
    else:
        server: Postgres = request.getfixturevalue("postgres")
        db = Database.postgres(server.create_database())
    yield db
    db.close()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


StoreFactory = Callable[..., TimeSeriesStore]


@pytest.fixture(params=["sqlite", "influxdb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the test's store, once on SQLite and once on a real influxd: one suite, two
    backends. ``store_factory(read_only=True)`` opens a second, read-only view."""
    opened: list[TimeSeriesStore] = []
    database = f"t_{uuid.uuid4().hex[:12]}"

    def open_store(*, read_only: bool = False, **options: Any) -> TimeSeriesStore:
        store: TimeSeriesStore
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "store.db", read_only=read_only, **options)
        else:
            server: Influxd = request.getfixturevalue("influxd")
            store = InfluxStore(server.url, database, read_only=read_only, **options)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def topic_root() -> str:
    """Each test publishes under its own topic root, so tests sharing a broker never meet."""
    return f"t-{uuid.uuid4().hex[:12]}/vitaltrail/v1"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
