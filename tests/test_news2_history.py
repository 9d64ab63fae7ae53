"""NEWS2 over time from downsampled buckets (clinical.news2_history): each bucket's end scored
with the values that stood then, documented values as documented by then, gaps left out."""

from __future__ import annotations

import pytest

from clinical.documented import Kind, Observation, Record
from clinical.news2_history import WINDOWS, news2_history
from devices.vitals import BODY_TEMPERATURE, HEART_RATE, RESPIRATORY_RATE, SPO2, SYSTOLIC_BP
from ingest.store import Bucket

MIN = 60_000
START = 1_767_268_800_000


def flat(value: float, *minutes: int) -> list[Bucket]:
    return [Bucket(START + m * MIN, value, value, value, 1) for m in minutes]


def normal(*minutes: int) -> dict[str, list[Bucket]]:
    return {
        HEART_RATE.code: flat(70, *minutes),
        SPO2.code: flat(97, *minutes),
        RESPIRATORY_RATE.code: flat(16, *minutes),
        SYSTOLIC_BP.code: flat(120, *minutes),
        BODY_TEMPERATURE.code: flat(37, *minutes),
    }


def record(seq: int, kind: Kind, value: str | bool | int, minute: int) -> Record:
    return Record(seq, "p", Observation(kind, value), "dr", "clinician", START + minute * MIN)


def test_each_bucket_end_is_scored_with_the_documented_values_as_they_stood() -> None:
    documented = [
        record(1, Kind.CONSCIOUSNESS, "A", 0),
        record(2, Kind.AIR_OR_OXYGEN, False, 0),
        record(3, Kind.AIR_OR_OXYGEN, True, 2),  # oxygen from minute 2 (scored at its end): +2
        record(4, Kind.CONSCIOUSNESS, "V", 3),  # responds to voice from minute 3: +3
    ]
    points = news2_history(
        normal(0, 1, 2, 3), documented, start_ms=START, end_ms=START + 4 * MIN, bucket_ms=MIN
    )
    assert [p.time_ms for p in points] == [START + m * MIN for m in (1, 2, 3, 4)]
    assert [p.news2.total for p in points] == [0, 2, 5, 5]
    assert [p.news2.partial for p in points] == [False] * 4
    assert points[-1].news2.red_flag
    assert points[-1].news2.response.tier == "medium"


def test_a_silent_device_goes_stale_and_then_leaves_a_gap() -> None:
    series = normal(0)
    series[HEART_RATE.code] = flat(135, 0)  # 3 points while current
    points = news2_history(series, [], start_ms=START, end_ms=START + 40 * MIN, bucket_ms=MIN)
    first = points[0].news2
    assert first.total == 3
    assert first.partial
    # current for 15 minutes after the bucket ended, then stale: no measured value, no point
    assert [p.time_ms for p in points] == [START + m * MIN for m in range(1, 17)]


def test_a_wide_bucket_is_scored_at_its_end_by_its_mean() -> None:
    hour = WINDOWS["7d"].bucket_ms
    series = {RESPIRATORY_RATE.code: [Bucket(START, 26, 12, 30, 60)]}
    (point,) = news2_history(series, [], start_ms=START, end_ms=START + hour, bucket_ms=hour)
    assert point.time_ms == START + hour
    assert point.news2.sub_scores[0].points == 3  # 26 breaths/min


def test_a_window_that_is_no_window_is_refused() -> None:
    with pytest.raises(ValueError, match="a history needs"):
        news2_history({}, [], start_ms=START, end_ms=START, bucket_ms=MIN)
    with pytest.raises(ValueError, match="a history needs"):
        news2_history({}, [], start_ms=START, end_ms=START + MIN, bucket_ms=0)
