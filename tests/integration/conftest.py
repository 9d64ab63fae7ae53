"""Fixtures of the integration tests that need more than the shared anonymous Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployed_broker import DeployedBroker, start_deployed_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DeployedBroker]:
    """A Mosquitto of its own with the deployment's configuration (TLS, passwords, roles)."""
    deployed = start_deployed_broker(tmp_path)
    yield deployed
    deployed.server.stop()
