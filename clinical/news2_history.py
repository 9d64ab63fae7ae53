"""NEWS2 over time, from the store's downsampled series and the documented history.

The trend a clinician reads beside the vitals' charts: at the end of each bucket of a window,
NEWS2 (``clinical.news2.score``) of what stood then. A measured parameter's value is the mean
of its latest bucket with data that ended by then, taken as measured at that bucket's end, so
a silent device goes stale after its age limit as it does on the live score; a bucket's mean
smooths a single extreme reading, which the vitals' charts (low-high band) still show. The
documented values are those recorded at or before that time (the history is append-only, so
the score of an hour ago does not change when staff document now). Pure: the caller reads.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clinical.documented import Kind, Record, latest_of
from clinical.news2 import (
    DEFAULT_MAX_AGE_MS,
    MEASURED_LOINC,
    MINUTE_MS,
    Measured,
    News2,
    Parameter,
    score,
)
from ingest.store import Bucket


@dataclass(frozen=True)
class Window:
    """A span the page offers and the bucket it is drawn in."""

    name: str
    span_ms: int
    bucket_ms: int


WINDOWS: Mapping[str, Window] = {
    w.name: w
    for w in (
        Window("1h", 60 * MINUTE_MS, MINUTE_MS),
        Window("24h", 24 * 60 * MINUTE_MS, 15 * MINUTE_MS),
        Window("7d", 7 * 24 * 60 * MINUTE_MS, 60 * MINUTE_MS),
    )
}


@dataclass(frozen=True)
class ScoredAt:
    time_ms: int
    news2: News2


def _documented_at(history: Sequence[Record], time_ms: int) -> dict[Kind, Record]:
    """The latest record of each kind documented at or before ``time_ms``."""
    found: dict[Kind, Record] = {}
    for record in history:
        if record.time_ms <= time_ms:
            kind = record.observation.kind
            if kind not in found or record.seq > found[kind].seq:
                found[kind] = record
    return found


def news2_history(
    series: Mapping[str, Sequence[Bucket]],
    documented: Sequence[Record],
    *,
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
    max_age_ms: Mapping[Parameter, int] = DEFAULT_MAX_AGE_MS,
) -> list[ScoredAt]:
    """NEWS2 at the end of each bucket of ``[start_ms, end_ms)`` from ``series`` (buckets of
    ``bucket_ms`` by LOINC code) and ``documented`` (any order). A time at which no measured
    parameter is current is left out: the trend shows a gap, not a score of nothing."""
    if bucket_ms <= 0 or start_ms >= end_ms:
        raise ValueError("a history needs a positive bucket and a start before its end")
    measured_codes = set(MEASURED_LOINC.values())
    ordered = {
        code: sorted(buckets, key=lambda b: b.start_ms)
        for code, buckets in series.items()
        if code in measured_codes
    }
    ends = {code: [b.start_ms + bucket_ms for b in bs] for code, bs in ordered.items()}
    points = []
    t = start_ms + bucket_ms
    while t <= end_ms:
        vitals = {}
        for code, buckets in ordered.items():
            i = bisect_right(ends[code], t)  # buckets that ended by t
            if i:
                vitals[code] = Measured(buckets[i - 1].mean, min(ends[code][i - 1], t))
        latest = latest_of(_documented_at(documented, t))
        news = score(
            latest.with_vitals(vitals),
            now_ms=t,
            max_age_ms=max_age_ms,
        )
        if any(s.parameter in MEASURED_LOINC for s in news.sub_scores):
            points.append(ScoredAt(t, news))
        t += bucket_ms
    return points
