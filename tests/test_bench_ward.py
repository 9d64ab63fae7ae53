"""`vitaltrail bench ward` runs end to end at a small size (the real run is in
docs/benchmarks.md): a mixed ward written through the pipeline, the in-process ceiling and an
alert round, and the server answering the clinician's summary of every patient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitaltrail.bench.alert_latency import measure_alert_latency
from vitaltrail.cli import main


def test_the_bench_serves_a_small_mixed_ward_to_its_clinician(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ward.json"
    argv = ["bench", "ward", "--patients", "20", "--readings", "3", "--clients", "1"]
    argv += ["--seconds", "1", "--ceiling-calls", "5", "--alert-probes", "0"]
    argv += ["--output", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["data"] == {**report["data"], "patients": 20, "readings": 60}
    ceiling = report["ceiling"]
    for step in ("summary_only", "read_and_summary", "alert_round"):
        assert 0 < ceiling[step]["p50_ms"] <= ceiling[step]["p99_ms"]
    # the mixed ward raises alerts: two of every ten patients are urgent or worse, one a 3
    assert ceiling["first_alert_round"]["events"] >= 6
    served = report["server"]["clients_1"]
    assert served["errors"] == 0
    assert served["requests"] > 0
    assert served["bytes_per_page"] == pytest.approx(ceiling["answer_bytes"], rel=0.05)
    printed = capsys.readouterr().out
    assert "vitaltrail bench ward --patients 20 --readings 3 --clients 1" in printed
    assert "clients_1" in printed
    assert "reading_to_alert" not in report  # measured by tests/test_alert_stream.py's bench test


def test_the_alert_latency_bench_times_each_probe_to_the_page_s_stream(tmp_path: Path) -> None:
    figures = measure_alert_latency(probes=2, rate=200, devices=5, warm_up_s=4, work=tmp_path)
    assert (figures.probes, figures.received) == (2, 2)
    assert len(figures.publish_to_alert_ms) == 2
    assert 0 < figures.p50_ms <= figures.max_ms < 10_000
    assert figures.achieved_rate > 100
    assert all(d > 0 for d in figures.publish_to_durable_ms)
    assert "2/2 alerts at" in figures.summary()
