"""C2SP signed notes and checkpoints: the conformance vector, and every way to break one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.note import NoteError, NoteSigner, NoteVerifier, open_note, sign_note

VECTOR = json.loads((Path(__file__).parent / "vectors" / "signed-note.json").read_text())


def test_signing_the_vector_text_gives_the_vector_note() -> None:
    signer = NoteSigner.parse(VECTOR["signer_key"])
    assert str(signer.verifier) == VECTOR["verifier_key"]
    assert str(signer) == VECTOR["signer_key"]
    assert sign_note(VECTOR["text"], signer) == VECTOR["signed_note"]


def test_the_vector_note_opens_with_the_vector_key() -> None:
    verifier = NoteVerifier.parse(VECTOR["verifier_key"])
    note, signed_by = open_note(VECTOR["signed_note"], [verifier])
    assert note.text == VECTOR["text"]
    assert signed_by == [verifier]


def test_any_changed_byte_of_text_or_signature_fails() -> None:
    verifier = NoteVerifier.parse(VECTOR["verifier_key"])
    signed = VECTOR["signed_note"]
    text_len = len(VECTOR["text"])
    sig_start = signed.rindex(" ") + 1
    for pos in [0, 10, text_len - 2, sig_start + 8, sig_start + 20, len(signed) - 3]:
        original = signed[pos]
        replacement = "A" if original != "A" else "B"
        mutated = signed[:pos] + replacement + signed[pos + 1 :]
        with pytest.raises(NoteError):
            open_note(mutated, [verifier])


def test_unknown_signers_are_ignored_but_one_pinned_signature_is_required() -> None:
    ours, theirs = NoteSigner.generate("log.example/a"), NoteSigner.generate("witness.example")
    note = sign_note("hello\n", ours)
    cosigned = note + theirs.signature_line("hello\n")
    _, signed_by = open_note(cosigned, [ours.verifier])
    assert signed_by == [ours.verifier]
    with pytest.raises(NoteError, match="no signature from a pinned key"):
        open_note(note, [theirs.verifier])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "no blank line\n",
        "text\n\n— name c2ln\n",  # signature too short
        "text\n\nnot a signature\n",
        "text\n\n— name !!!\n",
        "text\n\n— name c2lnbmF0dXJl",  # missing final newline
        "a\n\nb\n\n— n AAAAAAAAAA==\n",  # blank line inside the text
    ],
)
def test_malformed_notes_are_refused(bad: str) -> None:
    with pytest.raises(NoteError):
        open_note(bad, [NoteSigner.generate("name").verifier])


@pytest.mark.parametrize(
    "bad_key",
    ["", "a+b", "name+00000000+AQ==", "name+deadbeef+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
)
def test_malformed_verifier_keys_are_refused(bad_key: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.parse(bad_key)


def test_checkpoint_text_round_trips_and_rejects_garbage() -> None:
    cp = Checkpoint("example.com/log", 42, bytes(range(32)))
    assert Checkpoint.parse(cp.text()) == cp
    assert Checkpoint.parse(cp.text() + "extension line\n") == cp
    for bad in [
        "example.com/log\n042\nAA==\n",
        "o\n1\n",
        "o\n1\nAAAA\n",
        "o\n-1\n" + "A" * 44 + "\n",
        "o\n1\n" + "A" * 44,
    ]:
        with pytest.raises(CheckpointError):
            Checkpoint.parse(bad)
