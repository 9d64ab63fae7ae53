"""Hostile input to the proof bundle decoder and the offline verifier.

ProofBundle.from_json raises only BundleFormatError; verify_bundle keeps its promise: it
never raises on bad input, it answers with a failed report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given

from ledger import verifier
from ledger.bundle import BundleFormatError, ProofBundle
from ledger.verifier import Policy, verify_bundle
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import corpus
from vitaltrail.cli import main

GENUINE = corpus().bundles[-1]


def _policy() -> Policy:
    c = corpus()
    return Policy(c.ledger_key.verifier, (c.witness.verifier,), 1)


@FAST
@given(hostile("proof bundle"))
def test_from_json_raises_only_bundle_format_error(data: bytes) -> None:
    decode_or_documented_error("proof bundle", data)


@FAST
@given(hostile("verify_bundle"))
def test_verify_bundle_never_raises(data: bytes) -> None:
    decode_or_documented_error("verify_bundle", data)


def test_the_genuine_bundle_verifies() -> None:
    report = verify_bundle(GENUINE, _policy())
    assert report.ok, report.failed()


def _with(path: tuple[str, ...], value: object) -> bytes:
    doc = json.loads(GENUINE)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _proof_with(extra_hash: str | None = None, index: int | None = None) -> str:
    proof: str = json.loads(GENUINE)["reading"]["proof"]
    head, _, note = proof.partition("\n\n")
    lines = head.split("\n")
    if index is not None:
        lines[1] = f"index {index}"
    if extra_hash is not None:
        lines.append(extra_hash)
    return "\n".join(lines) + "\n\n" + note


NESTED = b"[" * 100_000 + b"]" * 100_000
HOSTILE = {
    "nested past the recursion limit": NESTED,
    "nested inside a field": GENUINE.replace(
        b'"key_revocation": {', b'"x": ' + NESTED + b', "key_revocation": {'
    ),
    "a number of 5,000 digits": GENUINE.replace(
        b'"format"', b'"n": ' + b"9" * 5000 + b', "format"'
    ),
    "a lone surrogate in a proof": _with(("reading", "proof"), "\ud800"),
    "a lone surrogate escaped in the checkpoint": GENUINE.replace(b"\\u2014", b"\\ud800"),
    "non-ASCII base64 entry": _with(("reading", "entry"), "\u00e9" * 8),
    "non-ASCII proof hash": _with(("reading", "proof"), _proof_with("\u00e9" * 44)),
    "index beyond 64 bits": _with(("reading", "proof"), _proof_with(index=2**64 + 1)),
    "entry a list": _with(("reading", "entry"), [1, 2]),
    "not UTF-8": b'{"format": "\xff"}',
    "a JSON array": b"[1, 2, 3]",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_fail_verification_with_a_reason(name: str) -> None:
    report = verify_bundle(HOSTILE[name], _policy())
    assert not report.ok
    assert report.failed()
    assert not any(c.detail.startswith("internal error") for c in report.checks)


def test_deep_nesting_is_a_bundle_format_error() -> None:
    with pytest.raises(BundleFormatError, match="at most 16 objects and arrays"):
        ProofBundle.from_json(NESTED)
    # Brackets inside strings are text, not nesting: a genuine bundle is not refused for them.
    doc = json.loads(GENUINE)
    doc["note"] = "[" * 1000
    assert ProofBundle.from_json(json.dumps(doc)).reading.entry


def test_vitaltrail_verify_answers_a_nested_document_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(NESTED)
    key = str(corpus().ledger_key.verifier)
    assert main(["verify", str(path), "--ledger-key", key]) == 1
    assert (
        "FAIL  bundle format: a bundle holds at most 16 objects and arrays"
        in capsys.readouterr().out
    )


def test_a_bug_in_a_check_is_a_failed_check_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> str:
        raise AttributeError("a bug")

    monkeypatch.setattr(verifier, "_check_inclusion", broken)
    report = verify_bundle(GENUINE, _policy())
    assert [(c.name, c.detail) for c in report.failed()] == [
        ("inclusion proof", "internal error (AttributeError)")
    ]
    assert "unexpected error in the inclusion proof check" in caplog.text
