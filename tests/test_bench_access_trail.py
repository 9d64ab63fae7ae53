"""`vitaltrail bench access-trail` runs end to end (tiny figures; the real run is in
docs/benchmarks.md): both modes answer every request, with and without the commit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vitaltrail.bench.access_trail import run_bench_access_trail


def test_the_bench_answers_every_request_in_both_modes(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = argparse.Namespace(patients=3, rate=10.0, seconds=1.0, clients=1, hours=0.01, output=out)
    assert run_bench_access_trail(args) == 0
    report = json.loads(out.read_text())
    for mode in ("off", "on"):
        assert report[mode]["open_loop"]["requests"] == 10
        assert report[mode]["open_loop"]["errors"] == 0
        assert report[mode]["closed_loop"]["errors"] == 0
        assert report[mode]["closed_loop"]["requests_per_s"] > 0
    assert "access-trail" in report["command"]
