"""Ingest: MQTT consumer -> verify -> validate -> dedup -> ledger + time-series store -> ack.

Errors::

    MqttError        the broker connection failed, was refused or was lost (ingest.mqtt_source)
    StorageError     a batch could not be made durable (ingest.ingestor)

A refused *message* is not an error: it becomes a quarantine record with a
:class:`~ingest.reasons.Reason`, and good messages keep flowing.
"""

from ingest.ingestor import IngestConfig, Ingestor, StorageError
from ingest.mqtt_source import MqttError, SourceConfig
from ingest.reasons import Reason

__all__ = ["IngestConfig", "Ingestor", "MqttError", "Reason", "SourceConfig", "StorageError"]
