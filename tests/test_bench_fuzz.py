"""`vitaltrail bench fuzz`: a short run through the real command, and proof that it can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitaltrail.bench.fuzz import DecoderStats, fuzz, run_one
from vitaltrail.bench.fuzz_corpus import Target, targets
from vitaltrail.cli import main


def test_a_short_run_feeds_every_decoder_and_nothing_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fuzz.json"
    assert main(["bench", "fuzz", "--inputs", "1200", "--seed", "7", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["inputs"], result["seed"], result["escaped"]) == (1200, 7, 0)
    names = [t.name for t in targets()]
    assert list(result["decoders"]) == names
    assert all(d["inputs"] == 100 for d in result["decoders"].values())
    assert sum(d["refused"] for d in result["decoders"].values()) > 600  # most inputs are hostile
    assert "1,200 inputs in" in capsys.readouterr().out


def test_the_same_seed_gives_the_same_run() -> None:
    first, second = fuzz(240, seed=11), fuzz(240, seed=11)
    assert [s.to_json()["refused"] for s in first.decoders.values()] == [
        s.to_json()["refused"] for s in second.decoders.values()
    ]


def test_an_exception_other_than_the_documented_one_is_counted_as_escaped() -> None:
    def decode(data: bytes) -> object:
        raise ValueError if data else KeyError

    target = Target("leaky", decode, (KeyError,), (b"",), "cbor")
    stats = DecoderStats()
    assert run_one(target, b"", stats) is None
    assert run_one(target, b"x", stats) == "ValueError"
    assert (stats.inputs, stats.refused, dict(stats.escaped)) == (2, 1, {"ValueError": 1})
