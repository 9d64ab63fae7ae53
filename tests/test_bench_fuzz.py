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
    names = [t.name for t in targets()]
    n = 60 * len(names)
    assert main(["bench", "fuzz", "--inputs", str(n), "--seed", "7", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["inputs"], result["seed"], result["escaped"]) == (n, 7, 0)
    assert list(result["decoders"]) == names
    assert all(d["inputs"] == 60 for d in result["decoders"].values())
    assert sum(d["refused"] for d in result["decoders"].values()) > n // 2  # most are hostile
    assert f"{n:,} inputs in" in capsys.readouterr().out


def test_the_read_sides_decoders_are_fed_too() -> None:
    """Consents, access events, patient keys, directory changes, bearer tokens and client
    assertions."""
    read_side = {
        "consent statement",
        "signed consent",
        "recorded consent",
        "access event",
        "patient key statement",
        "directory change",
        "bearer token",
        "client assertion",
    }
    assert read_side <= {t.name for t in targets()}
    # every seed is valid: the run starts from what the decoders accept
    for target in targets():
        if target.name not in read_side:
            continue
        for seed in target.seeds:
            stats = DecoderStats()
            assert run_one(target, seed, stats) is None
            assert stats.accepted == 1, (target.name, seed[:40])


def test_the_fhir_apis_decoders_are_fed_too() -> None:
    fhir = {"FHIR search", "paging cursor", "observation id"}
    found = [t for t in targets() if t.name in fhir]
    assert {t.name for t in found} == fhir
    for target in found:  # every seed is valid
        for seed in target.seeds:
            stats = DecoderStats()
            assert run_one(target, seed, stats) is None
            assert stats.accepted == 1, (target.name, seed[:40])


def test_a_re_signed_hostile_token_reaches_the_claim_checks() -> None:
    """Half of the structured JWT edits are signed with the issuer's key, so the token check
    refuses them for their claims, not only for a broken signature."""
    import random

    from access.errors import TokenError
    from vitaltrail.bench.fuzz_inputs import structured

    (token,) = [t for t in targets() if t.name == "bearer token"]
    rng = random.Random(5)
    reasons = set()
    for _ in range(300):
        try:
            token.decode(structured(rng, token))
        except TokenError as exc:
            reasons.add(exc.reason)
    assert "bad_signature" in reasons
    assert reasons - {"bad_signature", "malformed"}, reasons


def test_the_same_seed_gives_the_same_run() -> None:
    n = 40 * len(targets())
    first, second = fuzz(n, seed=11), fuzz(n, seed=11)
    assert [s.to_json()["refused"] for s in first.decoders.values()] == [
        s.to_json()["refused"] for s in second.decoders.values()
    ]
    assert [s.verdicts for s in first.decoders.values()] == [
        s.verdicts for s in second.decoders.values()
    ]


def test_the_same_seed_gives_the_same_inputs() -> None:
    """Keys fixed, ECDSA nonces deterministic: a re-signed token is the same bytes each time."""
    import random

    from vitaltrail.bench.fuzz_inputs import hostile_input

    def inputs() -> list[bytes]:
        rng = random.Random(4)
        return [hostile_input(rng, t) for t in targets() for _ in range(30)]

    assert inputs() == inputs()


def test_an_exception_other_than_the_documented_one_is_counted_as_escaped() -> None:
    def decode(data: bytes) -> object:
        raise ValueError if data else KeyError

    target = Target("leaky", decode, (KeyError,), (b"",), "cbor")
    stats = DecoderStats()
    assert run_one(target, b"", stats) is None
    assert run_one(target, b"x", stats) == "ValueError"
    assert (stats.inputs, stats.refused, dict(stats.escaped)) == (2, 1, {"ValueError": 1})
