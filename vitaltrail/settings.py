"""The one Settings object, read from the environment (VITALTRAIL_*) and command-line flags.

Only the composition root reads the environment; components take frozen config values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VITALTRAIL_", frozen=True)

    data_dir: Path = Path("data")
    origin: str = "vitaltrail.local/ledger"  # the log's identity: checkpoint origin and key name

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt5: bool = True
    topic_root: str = "vitaltrail/v1"
    share_group: str = "ingest"
    client_id: str = "vitaltrail-ingest"

    http_host: str = "127.0.0.1"
    http_port: int = 8000

    batch_max: int = 2000
    check_workers: int = 2  # processes verifying signatures (one per core); 0: on the writer thread
    seal_interval_s: float = 1.0
    seal_every: int = 1000  # entries waiting that trigger a block before the interval ends
    log_level: str = "INFO"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.db"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def quarantine_path(self) -> Path:
        return self.data_dir / "quarantine.db"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.db"

    @property
    def ledger_key_path(self) -> Path:
        return self.data_dir / "keys" / "ledger.key"

    @property
    def simulator_dir(self) -> Path:
        return self.data_dir / "simulator"
