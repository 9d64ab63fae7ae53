"""InfluxDB's text formats, written safely: line protocol for samples and minute aggregates,
InfluxQL string literals and identifiers (ids are data, never query)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ingest.store import SamplePoint

MEASUREMENT = "vitals"
MINUTES = "vitals_1m"  # fields total, n, low, high, last_entry per patient, code and minute


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp_ns(point: SamplePoint) -> int:
    return point.time_ms * 1_000_000 + (point.seq % 1000) * 1000 + point.position


def line(point: SamplePoint) -> str:
    return (
        f"{MEASUREMENT},code={_tag(point.code)},device={_tag(point.device_id)},"
        f"patient={_tag(point.patient_id)} value={float(point.value)!r},"
        f"unit={_string_field(point.unit)},entry={point.entry_index}i,seq={point.seq}i,"
        f"pos={point.position}i {timestamp_ns(point)}"
    )


@dataclass(frozen=True)
class Minute:
    """One patient's vital over one minute: the aggregate kept for good."""

    patient_id: str
    code: str
    minute_ms: int
    total: float
    n: int
    low: float
    high: float
    last_entry: int  # the latest ledger entry folded in

    def line(self) -> str:
        return (
            f"{MINUTES},code={_tag(self.code)},patient={_tag(self.patient_id)}"
            f" total={float(self.total)!r},n={self.n}i,low={float(self.low)!r},"
            f"high={float(self.high)!r},last_entry={self.last_entry}i {self.minute_ms * 1_000_000}"
        )

    def folding(self, points: Sequence[SamplePoint]) -> Minute:
        """This minute with ``points`` added (the caller passes only new ones)."""
        values = [p.value for p in points]
        return Minute(
            self.patient_id,
            self.code,
            self.minute_ms,
            self.total + sum(values),
            self.n + len(values),
            min(self.low, *values),
            max(self.high, *values),
            max(self.last_entry, *(p.entry_index for p in points)),
        )


def ident(name: str) -> str:
    """An InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
