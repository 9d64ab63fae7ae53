"""Hostile input to the C2SP signed-note decoder: parse_note and open_note raise only NoteError."""

from __future__ import annotations

import pytest
from hypothesis import given

from ledger.note import NoteError, NoteVerifier, open_note, parse_note
from tests.hostile import FAST, decode_or_documented_error, hostile
from vitaltrail.bench.fuzz_corpus import corpus, text

GENUINE = text(corpus().notes[0])
KEY = corpus().ledger_key.verifier


@FAST
@given(hostile("signed note"))
def test_open_note_raises_only_note_error(data: bytes) -> None:
    decode_or_documented_error("signed note", data)


def test_the_genuine_note_opens() -> None:
    note, signed_by = open_note(GENUINE, [KEY])
    assert signed_by == [KEY]
    assert note.text.endswith("\n")


@pytest.mark.parametrize(
    ("note", "detail"),
    [
        ("\ud800\n\n\u2014 name AAAAAAAA\n", "not valid Unicode"),  # e.g. from a JSON escape
        (GENUINE.replace("\u2014 ", "\u2014 \udc80", 1), "not valid Unicode"),
        (GENUINE[: GENUINE.rindex(" ") + 1] + "\u00e9" * 12 + "\n", "not valid base64"),
        ("t\n\n" + "\u2014 n AAAAAAAA\n" * 101, "too many signatures"),
        ("t\n" * (1 << 19) + "\n\u2014 n AAAAAAAA\n", "too large"),
    ],
)
def test_malformed_notes_are_a_note_error(note: str, detail: str) -> None:
    with pytest.raises(NoteError, match=detail):
        open_note(note, [KEY])


@pytest.mark.parametrize(
    "key", ["n+00000000+\u00e9\u00e9\u00e9\u00e9", "\udc80+1+AQ==", "n+zz+" + "A" * 5000]
)
def test_malformed_verifier_keys_are_a_note_error(key: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.parse(key)


def test_parse_note_refuses_a_surrogate_anywhere() -> None:
    with pytest.raises(NoteError):
        parse_note(GENUINE[:-1] + "\udc80\n")
