"""The time-series store in InfluxDB over its 1.x HTTP API: line protocol to /write, InfluxQL to /query.

That API is the one InfluxDB 1.x serves natively and 2.x and 3.x serve for compatibility, and
the store uses only what all three serve: ``/write`` with ``db`` and ``rp``, ``SELECT`` with
``GROUP BY time(...)``. No ``SELECT INTO``, no ``DELETE``, no continuous queries.

Two retention policies (on 2.x/3.x: two buckets, each mapped to its policy by a DBRP mapping):

* ``raw`` (the database's default) holds measurement ``vitals``: tags ``patient``, ``device``,
  ``code``; fields ``value``, ``unit``, ``entry`` (the ledger entry), ``seq`` and ``pos``. Its
  duration is the raw window plus an hour of slack (see :data:`RP_SLACK_MS`); InfluxDB expires
  raw samples itself, a shard group at a time.
* ``aggregates`` (kept for good) holds ``vitals_1m``, one point per patient, vital and minute:
  ``total``, ``n``, ``low``, ``high`` and ``last_entry`` (the latest ledger entry folded in), and
  the roll-up's progress.

InfluxDB keys a point by its series and timestamp, so a sample's timestamp is its time in
milliseconds plus a sub-millisecond offset made of its sequence number and position: a
redelivered sample overwrites itself (writes are idempotent, as the store interface requires),
and two samples of one vital in the same millisecond stay two points. A minute's aggregate is
one point too, so rolling a minute up again overwrites it. ``/write`` answers only after
influxd has fsynced its WAL (``wal-fsync-delay = "0s"`` in vitaltrail/influxdb.conf).

Compaction reads complete minutes from ``raw`` with ``GROUP BY time(1m)`` and writes their
aggregates back with ``/write`` (:mod:`ingest.influx_lines` writes the text); minutes that late
samples touched are rolled up again.
Samples whose minute is already past the raw window when written (a reindex of an old ledger)
cannot go into ``raw`` - InfluxDB refuses points older than a policy's duration - so they are
folded straight into their minute's aggregate: only samples of ledger entries later than its
``last_entry`` are added, which makes a rewrite of the same readings change nothing (writes
carry whole readings, in log order: reindex and ingest both do).

A write that fails is retried with backoff; if InfluxDB stays down, :class:`StoreUnavailable`
reaches the ingestor, which stops acknowledging (the broker keeps the messages) and reconnects
with backoff until InfluxDB is back.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx2

from ingest.influx_lines import MEASUREMENT, MINUTES, Minute, ident, line, literal
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

STATE = "vitaltrail_store"  # the roll-up's progress, one point at time 0
RAW_RP = "raw"
AGGREGATES_RP = "aggregates"
# The raw policy keeps samples an hour longer than the store's raw window: a sample the store
# still counts as raw is then never refused by influxd for a clock a little ahead of ours, and
# the policy meets InfluxDB's minimum duration (1 h) whatever the window.
RP_SLACK_MS = 3_600_000
HOUR_MS = 3_600_000
REROLL_PER_COMPACTION_MS = 6 * HOUR_MS
_BEYOND_RETENTION = re.compile(r"points beyond retention policy dropped=(\d+)")


class StoreUnavailable(Exception):
    """InfluxDB did not take a write after every retry."""


class StoreQueryError(Exception):
    """InfluxDB refused a query or answered something unreadable."""


class InfluxStore:
    """A :class:`~ingest.store.TimeSeriesStore` on InfluxDB's 1.x HTTP API."""

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
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        """``token``: InfluxDB 2's or 3's API token, for its 1.x-compatible /write and /query;
        the database and its two policies are then buckets and DBRP mappings made by the
        deployment (deploy/influxdb/10-dbrp.sh), since that API cannot create them. Without
        a token (InfluxDB 1.x) a writer creates the database and both policies."""
        headers = {"Authorization": f"Token {token}"} if token else {}
        self._http = httpx2.Client(
            base_url=url, timeout=timeout_s, headers=headers, transport=transport
        )
        self.database = database
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._batch_points = batch_points
        self.raw_retention_ms = raw_retention_ms
        self._clock = clock
        # Roll-up state lives in this (writer's) process: the first compaction after a start
        # rolls up the whole raw window again, so nothing written before a restart is missed.
        self._rolled_until_ms: int | None = None
        self._reroll = (0, 0)  # [lo, hi): the raw window still to roll up again after a start
        self._late: dict[tuple[str, str], tuple[int, int]] = {}  # (patient, code) -> [lo, hi)
        # Samples influxd refused as older than its raw policy (its clock over an hour ahead
        # of ours): logged and counted, and the batch's other samples are stored.
        self.dropped_samples = 0
        if not read_only and token is None:
            self._create_policies()

    def _create_policies(self) -> None:
        error = self._statement(f"CREATE DATABASE {ident(self.database)}")
        if error is not None:
            raise StoreQueryError(f"InfluxDB refused database {self.database}: {error}")
        raw = f"DURATION {self.raw_retention_ms + RP_SLACK_MS}ms"
        for name, duration, default in (
            (RAW_RP, raw, " DEFAULT"),
            (AGGREGATES_RP, "DURATION INF", ""),
        ):
            on = f"{ident(name)} ON {ident(self.database)}"
            error = self._statement(
                f"CREATE RETENTION POLICY {on} {duration} REPLICATION 1{default}"
            )
            if error is not None and "already exists" in error:  # made for another window
                error = self._statement(f"ALTER RETENTION POLICY {on} {duration}{default}")
            if error is not None:
                raise StoreQueryError(f"InfluxDB refused retention policy {name}: {error}")

    def close(self) -> None:
        self._http.close()

    def _horizon(self, now_ms: int) -> int:
        """The start of the oldest minute wholly inside the raw window."""
        return -(-(now_ms - self.raw_retention_ms) // MINUTE_MS) * MINUTE_MS

    def write(self, points: Sequence[SamplePoint]) -> None:
        horizon = self._horizon(self._clock())
        raw = [p for p in points if p.time_ms >= horizon]
        if self._rolled_until_ms is not None:
            for p in raw:
                if p.time_ms < self._rolled_until_ms:
                    minute = p.time_ms - p.time_ms % MINUTE_MS
                    lo, hi = self._late.get((p.patient_id, p.code), (minute, minute))
                    self._late[(p.patient_id, p.code)] = (
                        min(lo, minute),
                        max(hi, minute + MINUTE_MS),
                    )
        self._write_lines(RAW_RP, [line(p) for p in raw])
        if len(raw) < len(points):
            self._fold_in([p for p in points if p.time_ms < horizon])

    def _write_lines(self, rp: str, lines: Sequence[str]) -> None:
        for start in range(0, len(lines), self._batch_points):
            body = "\n".join(lines[start : start + self._batch_points]).encode()
            self._post("/write", {"db": self.database, "rp": rp, "precision": "ns"}, body)

    def _fold_in(self, points: Sequence[SamplePoint]) -> None:
        """Add samples past the raw window to their minutes' aggregates, each at most once."""
        groups: dict[tuple[str, str, int], dict[tuple[str, int, int], SamplePoint]] = {}
        for p in points:
            key = (p.patient_id, p.code, p.time_ms - p.time_ms % MINUTE_MS)
            groups.setdefault(key, {})[(p.device_id, p.seq, p.position)] = p
        lo = min(minute for _, _, minute in groups)
        hi = max(minute for _, _, minute in groups) + MINUTE_MS
        patients = " OR ".join(f"patient = {literal(p)}" for p in {k[0] for k in groups})
        stored = {
            (m.patient_id, m.code, m.minute_ms): m
            for m in self._minutes(
                f"SELECT total, n, low, high, last_entry FROM {_AGGREGATES}"
                f" WHERE ({patients}) AND time >= {lo}ms AND time < {hi}ms GROUP BY patient, code"
            )
        }
        folded: list[str] = []
        for (patient, code, minute), samples in groups.items():
            known = stored.get((patient, code, minute))
            last = -1 if known is None else known.last_entry
            new = [p for p in samples.values() if p.entry_index > last]
            if not new:
                continue  # a rewrite of readings folded in before
            base = known or Minute(patient, code, minute, 0.0, 0, new[0].value, new[0].value, -1)
            folded.append(base.folding(new).line())
        self._write_lines(AGGREGATES_RP, folded)

    def _post(self, path: str, params: dict[str, str], body: bytes | None = None) -> str:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._http.post(path, params=params, content=body)
            except httpx2.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return response.text
                dropped = _BEYOND_RETENTION.search(response.text)
                if dropped is not None:  # the batch's other points are stored
                    self.dropped_samples += int(dropped[1])
                    log.warning("InfluxDB dropped %s samples older than its raw policy", dropped[1])
                    return response.text
                if response.status_code < 500:  # our request is wrong: retrying will not help
                    raise StoreQueryError(f"InfluxDB refused {path}: {response.text[:300]}")
                failure = f"HTTP {response.status_code}"
            if attempt == self._attempts:
                raise StoreUnavailable(f"InfluxDB {path} failed {attempt} times: {failure}")
            log.warning("InfluxDB %s failed (%s); retry in %.2fs", path, failure, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _statement(self, statement: str) -> str | None:
        """Run a statement that changes the schema; return its error (None: it succeeded)."""
        answer = json.loads(self._post("/query", {"q": statement}))
        errors = [str(r["error"]) for r in answer.get("results", []) if "error" in r]
        return errors[0] if errors else None

    def compact(self, now_ms: int) -> None:
        """Roll complete minutes up into aggregates, and the minutes late samples touched
        again. Raw samples expire by the raw policy's duration: nothing is deleted here.

        The first compaction in a process also rolls the raw window up again (late samples
        written before a restart were remembered by the process that ended), a few hours of
        it per compaction, so that no compaction holds the ingestor's writer for long."""
        until = now_ms - now_ms % MINUTE_MS
        if self._rolled_until_ms is None:  # first time in this process: from what is stored
            stored = self._select(f"SELECT last(rolled_until) FROM {_STATE}")
            persisted = int(stored[0]["values"][0][1]) if stored else 0
            oldest_raw = now_ms - self.raw_retention_ms - RP_SLACK_MS  # raw holds nothing older
            self._rolled_until_ms = max(persisted, oldest_raw - oldest_raw % MINUTE_MS)
            self._reroll = (
                min(self._horizon(now_ms), self._rolled_until_ms),
                self._rolled_until_ms,
            )
        self._roll_hours(self._rolled_until_ms, until)
        self._rolled_until_ms = max(until, self._rolled_until_ms)
        lo, hi = self._reroll
        if lo < hi:
            self._roll_hours(lo, min(hi, lo + REROLL_PER_COMPACTION_MS))
            self._reroll = (min(hi, lo + REROLL_PER_COMPACTION_MS), hi)
        for (patient, code), (lo, hi) in self._late.items():
            self._roll_up(f"patient = {literal(patient)} AND code = {literal(code)} AND ", lo, hi)
        self._late.clear()
        self._write_lines(AGGREGATES_RP, [f"{STATE} rolled_until={self._rolled_until_ms}i 0"])

    def _roll_hours(self, lo: int, hi: int) -> None:
        for start in range(lo, hi, HOUR_MS):  # an hour at a time: bounded answers
            self._roll_up("", start, min(start + HOUR_MS, hi))

    def _roll_up(self, where: str, lo: int, hi: int) -> None:
        """Aggregate the raw samples of minutes ``[lo, hi)`` (and ``where``, a condition
        followed by ``AND``) and write them, overwriting what was rolled up before."""
        minutes = self._minutes(
            f"SELECT sum(value), count(value), min(value), max(value), max(entry)"
            f" FROM {_RAW} WHERE {where}time >= {lo}ms AND time < {hi}ms"
            " GROUP BY time(1m), patient, code fill(none)"
        )
        self._write_lines(AGGREGATES_RP, [m.line() for m in minutes])

    def _minutes(self, query: str) -> list[Minute]:
        return [
            Minute(s["tags"]["patient"], s["tags"]["code"], t, total, int(n), low, high, int(last))
            for s in self._select(query)
            for t, total, n, low, high, last in s["values"]
        ]

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
        series = self._select(f'SHOW TAG VALUES FROM {_RAW} WITH KEY = "patient"')
        return sorted(value for s in series for _, value in s["values"])

    def latest(self, patient_id: str | None = None) -> list[LatestVital]:
        where = "" if patient_id is None else f" WHERE patient = {literal(patient_id)}"
        series = self._select(
            f"SELECT last(value), unit, entry FROM {_RAW}{where} GROUP BY patient, code"
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
            f" WHERE patient = {literal(patient_id)} AND code = {literal(code)}"
            f" AND time >= {start_ms}ms AND time < {end_ms}ms"
        )
        group = f" GROUP BY time({bucket_ms}ms, {start_ms % bucket_ms}ms) fill(none)"
        horizon = self._clock() - self.raw_retention_ms
        if use_minutes(start_ms, bucket_ms, horizon):
            rows = self._select(
                f"SELECT sum(total), sum(n), min(low), max(high) FROM {_AGGREGATES}{where}{group}"
            )
            return [
                Bucket(t, total / n, low, high, int(n))
                for s in rows
                for t, total, n, low, high in s["values"]
            ]
        rows = self._select(
            f"SELECT mean(value), min(value), max(value), count(value) FROM {_RAW}{where}{group}"
        )
        return [
            Bucket(t, mean, low, high, count)
            for s in rows
            for t, mean, low, high, count in s["values"]
        ]

    def count(self) -> int:
        """Raw samples stored (those the raw policy has not expired yet)."""
        series = self._select(f"SELECT count(value) FROM {_RAW}")
        return int(series[0]["values"][0][1]) if series else 0


_RAW = f"{ident(RAW_RP)}.{ident(MEASUREMENT)}"
_AGGREGATES = f"{ident(AGGREGATES_RP)}.{ident(MINUTES)}"
_STATE = f"{ident(AGGREGATES_RP)}.{ident(STATE)}"
