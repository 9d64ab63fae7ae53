"""Prometheus metrics of one ingestor, in a registry of its own (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.reasons import Reason

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "vitaltrail_messages_received", "MQTT messages received", registry=r
        )
        self.accepted = Counter(
            "vitaltrail_readings_accepted", "Readings newly recorded", registry=r
        )
        self.duplicates = Counter(
            "vitaltrail_readings_duplicate", "Redelivered readings already recorded", registry=r
        )
        self.rejected = Counter(
            "vitaltrail_messages_rejected", "Messages quarantined", ["reason"], registry=r
        )
        for reason in Reason:  # every reason shows up at 0, so alerts can be written up front
            self.rejected.labels(reason=reason.value)
        self.quarantine_truncated = Counter(
            "vitaltrail_quarantine_truncated",
            "Quarantined messages stored cut to the quarantine's keep_bytes (digest kept)",
            registry=r,
        )
        self.quarantine_evicted = Counter(
            "vitaltrail_quarantine_evicted",
            "Quarantine records deleted to keep to its budget, by cause (size or age)",
            ["cause"],
            registry=r,
        )
        for cause in ("size", "age"):
            self.quarantine_evicted.labels(cause=cause)
        self.quarantine_bytes = Gauge(
            "vitaltrail_quarantine_bytes",
            "What the quarantine's records cost against its size budget",
            registry=r,
        )
        self.batch_size = Histogram(
            "vitaltrail_batch_size",
            "Messages per durable batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.durable_latency = Histogram(
            "vitaltrail_receive_to_durable_seconds",
            "From receipt of a message to its ledger and store commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.blocks_sealed = Counter("vitaltrail_blocks_sealed", "Ledger blocks sealed", registry=r)
        self.cosignatures = Counter(
            "vitaltrail_witness_cosignatures",
            "Checkpoint cosignatures received, by witness",
            ["witness"],
            registry=r,
        )
        self.witness_failures = Counter(
            "vitaltrail_witness_failures",
            "Checkpoints a witness did not cosign (down, refused, bad answer), by witness",
            ["witness"],
            registry=r,
        )
        self.ledger_size = Gauge("vitaltrail_ledger_entries", "Entries in the ledger", registry=r)
        self.interruptions = Counter(
            "vitaltrail_ingest_interruptions",
            "Times ingest stopped acknowledging and reconnected, by cause (broker or storage)",
            ["cause"],
            registry=r,
        )
        self.unacked = Gauge(
            "vitaltrail_messages_unacked", "Received messages not yet acknowledged", registry=r
        )
        self.access_entries = Counter(
            "vitaltrail_access_entries_copied",
            "Access-journal rows (consents, patient keys, access events) newly logged",
            registry=r,
        )
        self.journal_unreadable = Counter(
            "vitaltrail_access_journal_unreadable",
            "Times the access journal could not be read (its rows are copied later)",
            registry=r,
        )
        self.connected = Gauge(
            "vitaltrail_broker_connected", "1 while connected to the broker", registry=r
        )

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample, e.g. ``vitaltrail_readings_accepted_total``."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def rejected_count(self, reason: Reason) -> float:
        return self.sample("vitaltrail_messages_rejected_total", {"reason": reason.value})
