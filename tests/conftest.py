"""Shared fixtures. Integration tests get a real Mosquitto, started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.database import Database
from tests.postgres import Postgres
from tests.servers import Mosquitto


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


@pytest.fixture
def topic_root() -> str:
    """Each test publishes under its own topic root, so tests sharing a broker never meet."""
    return f"t-{uuid.uuid4().hex[:12]}/vitaltrail/v1"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
