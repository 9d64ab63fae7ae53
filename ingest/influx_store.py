"""The time-series store in InfluxDB 1.x, over its HTTP API: line protocol to /write, InfluxQL to /query.

One measurement, ``vitals``: tags ``patient``, ``device``, ``code``; fields ``value``, ``unit``,
``entry`` (the ledger entry), ``seq`` and ``pos``. InfluxDB keys a point by its series and
timestamp, so a sample's timestamp is its time in milliseconds plus a sub-millisecond offset
made of its sequence number and position: a redelivered sample overwrites itself (writes are
idempotent, as the store interface requires), and two samples of one vital in the same
millisecond stay two points. ``/write`` answers only after influxd has fsynced its WAL
(``wal-fsync-delay = "0s"`` in vitaltrail/influxdb.conf).

A write that fails is retried with backoff; if InfluxDB stays down, :class:`StoreUnavailable`
reaches the ingestor, which stops acknowledging (the broker keeps the messages) and reconnects
with backoff until InfluxDB is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx2

from ingest.store import (
    MINUTE_MS,
    RAW_RETENTION_MS,
    Bucket,
    LatestVital,
    SamplePoint,
    use_minutes,
    wall_clock_ms,
)

log = logging.getLogger("vitaltrail.ingest")

MEASUREMENT = "vitals"
MINUTES = "vitals_1m"  # fields total, n, low, high per patient, code and minute
STATE = "vitaltrail_store"  # the roll-up's progress, one point at time 0


class StoreUnavailable(Exception):
    """InfluxDB did not take a write after every retry."""


class StoreQueryError(Exception):
    """InfluxDB refused a query or answered something unreadable."""


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
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


class InfluxStore:
    """A :class:`~ingest.store.TimeSeriesStore` on InfluxDB 1.x."""

    def __init__(
        self,
        url: str,
        database: str = "vitaltrail",
        *,
        read_only: bool = False,
        attempts: int = 4,
        backoff_s: float = 0.25,
        timeout_s: float = 10.0,
        batch_points: int = 5000,
        token: str | None = None,
        raw_retention_ms: int = RAW_RETENTION_MS,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """``token``: InfluxDB 2's API token, for its 1.x-compatible /write and /query (the
        database is then a bucket of that name, made by InfluxDB's own setup)."""
        headers = {"Authorization": f"Token {token}"} if token else {}
        # InfluxDB 2's 1.x-compatible API has no SELECT INTO nor DELETE: no roll-up there
        # (the bucket's own retention applies; see docs/decisions.md).
        self.compacts = token is None
        self._http = httpx2.Client(base_url=url, timeout=timeout_s, headers=headers)
        self.database = database
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._batch_points = batch_points
        self.raw_retention_ms = raw_retention_ms
        self._clock = clock
        # Roll-up state lives in this (writer's) process: the first compaction after a start
        # rolls up the whole raw window again, so nothing written before a restart is missed.
        self._rolled_until_ms: int | None = None
        self._late: dict[tuple[str, str], tuple[int, int]] = {}  # (patient, code) -> [lo, hi)
        if not read_only and token is None:
            self._post("/query", {"q": f'CREATE DATABASE "{database}"'})

    def close(self) -> None:
        self._http.close()

    def write(self, points: Sequence[SamplePoint]) -> None:
        if self._rolled_until_ms is not None:
            horizon = self._clock() - self.raw_retention_ms
            for p in points:
                if horizon <= p.time_ms < self._rolled_until_ms:
                    minute = p.time_ms - p.time_ms % MINUTE_MS
                    lo, hi = self._late.get((p.patient_id, p.code), (minute, minute))
                    self._late[(p.patient_id, p.code)] = (
                        min(lo, minute),
                        max(hi, minute + MINUTE_MS),
                    )
        for start in range(0, len(points), self._batch_points):
            body = "\n".join(line(p) for p in points[start : start + self._batch_points])
            self._post("/write", {"db": self.database, "precision": "ns"}, body.encode())

    def _post(self, path: str, params: dict[str, str], body: bytes | None = None) -> None:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._http.post(path, params=params, content=body)
            except httpx2.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return
                if response.status_code < 500:  # our request is wrong: retrying will not help
                    raise StoreQueryError(f"InfluxDB refused {path}: {response.text[:300]}")
                failure = f"HTTP {response.status_code}"
            if attempt == self._attempts:
                raise StoreUnavailable(f"InfluxDB {path} failed {attempt} times: {failure}")
            log.warning("InfluxDB %s failed (%s); retry in %.2fs", path, failure, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def compact(self, now_ms: int) -> None:
        if not self.compacts:
            return
        horizon = now_ms - self.raw_retention_ms
        until = now_ms - now_ms % MINUTE_MS
        if self._rolled_until_ms is None:  # first time in this process: from what is stored
            stored = self._select(f"SELECT last(rolled_until) FROM {STATE}")
            persisted = int(stored[0]["values"][0][1]) if stored else 0
            start = min(persisted, horizon)  # and the raw window again: late data we forgot
        else:
            start = self._rolled_until_ms
        if start < until:
            self._roll_up(f"time >= {start}ms AND time < {until}ms")
        for (patient, code), (lo, hi) in self._late.items():
            self._roll_up(
                f"patient = {_literal(patient)} AND code = {_literal(code)}"
                f" AND time >= {lo}ms AND time < {hi}ms"
            )
        self._late.clear()
        self._rolled_until_ms = max(until, self._rolled_until_ms or 0)
        state = f"{STATE} rolled_until={self._rolled_until_ms}i 0"
        self._post("/write", {"db": self.database, "precision": "ns"}, state.encode())
        self._post(
            "/query",
            {
                "db": self.database,
                "q": f"DELETE FROM {MEASUREMENT} WHERE time < {min(horizon, until)}ms",
            },
        )

    def _roll_up(self, where: str) -> None:
        self._post(
            "/query",
            {
                "db": self.database,
                "q": f"SELECT sum(value) AS total, count(value) AS n, min(value) AS low,"
                f" max(value) AS high INTO {MINUTES} FROM {MEASUREMENT} WHERE {where}"
                " GROUP BY time(1m), patient, code",
            },
        )

    def _select(self, query: str) -> list[dict[str, Any]]:
        try:
            response = self._http.get(
                "/query", params={"db": self.database, "q": query, "epoch": "ms"}
            )
        except httpx2.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB query failed: {exc}") from exc
        if response.status_code >= 300:
            raise StoreQueryError(f"InfluxDB refused a query: {response.text[:300]}")
        (result,) = response.json()["results"]
        if "error" in result:
            if "database not found" in result["error"]:
                return []
            raise StoreQueryError(result["error"])
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def patients(self) -> list[str]:
        series = self._select(f'SHOW TAG VALUES FROM {MEASUREMENT} WITH KEY = "patient"')
        return sorted(value for s in series for _, value in s["values"])

    def latest(self, patient_id: str | None = None) -> list[LatestVital]:
        where = "" if patient_id is None else f" WHERE patient = {_literal(patient_id)}"
        series = self._select(
            f"SELECT last(value), unit, entry FROM {MEASUREMENT}{where} GROUP BY patient, code"
        )
        found = [
            LatestVital(s["tags"]["patient"], s["tags"]["code"], unit, value, t, entry)
            for s in series
            for t, value, unit, entry in s["values"]
        ]
        return sorted(found, key=lambda v: (v.patient_id, v.code))

    def series(
        self, patient_id: str, code: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        if bucket_ms <= 0:
            raise ValueError("bucket width must be positive")
        where = (
            f" WHERE patient = {_literal(patient_id)} AND code = {_literal(code)}"
            f" AND time >= {start_ms}ms AND time < {end_ms}ms"
        )
        group = f" GROUP BY time({bucket_ms}ms, {start_ms % bucket_ms}ms) fill(none)"
        horizon = self._clock() - self.raw_retention_ms
        if self.compacts and use_minutes(start_ms, bucket_ms, horizon):
            rows = self._select(
                f"SELECT sum(total), sum(n), min(low), max(high) FROM {MINUTES}{where}{group}"
            )
            return [
                Bucket(t, total / n, low, high, int(n))
                for s in rows
                for t, total, n, low, high in s["values"]
            ]
        rows = self._select(
            f"SELECT mean(value), min(value), max(value), count(value) FROM {MEASUREMENT}"
            f"{where}{group}"
        )
        return [
            Bucket(t, mean, low, high, count)
            for s in rows
            for t, mean, low, high, count in s["values"]
        ]

    def count(self) -> int:
        series = self._select(f"SELECT count(value) FROM {MEASUREMENT}")
        return int(series[0]["values"][0][1]) if series else 0
