"""`vitaltrail bench fhir` runs end to end at a tiny size (the real run is in
docs/benchmarks.md): the data written and indexed, the in-process ceiling, and both servers
answering every page of both phases - first pages and walks to the end by next links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitaltrail.cli import main


def test_the_bench_pages_a_tiny_day_with_the_trail_on_and_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fhir.json"
    hours = 0.1  # 360 readings: four pages of 100
    argv = ["bench", "fhir", "--hours", str(hours), "--clients", "1", "--seconds", "1"]
    argv += ["--ceiling-pages", "10"]
    assert main([*argv, "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["data"]["readings"] == 360
    assert report["index_catch_up"]["entries"] == 361  # and the band's key registration
    assert report["ceiling"]["walk_pages"] == 4
    for step in ("index_sql", "plus_ledger_read", "plus_observations", "plus_bundle_json"):
        assert report["ceiling"][step]["deep"]["p99_ms"] > 0
    for mode in ("trail_off", "trail_on"):
        first, following = report[mode]["first_1"], report[mode]["next_1"]
        assert (first["errors"], following["errors"]) == (0, 0)
        assert min(first["requests"], following["requests"]) > 0
        assert following["deepest_page"] == 4  # the walks reached the end
        assert first["bytes_per_page"] > following["deep_half"]["bytes_per_page"] / 2 > 0
    assert "trail_on_no_gc_freeze" not in report
    printed = capsys.readouterr().out
    command = "vitaltrail bench fhir --patients 1 --hours 0.1 --clients 1 --seconds 1.0"
    assert f"{command} --ceiling-pages 10" in printed
    assert "trail_on               1 clients, next  pages:" in printed
