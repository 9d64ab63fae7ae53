"""The witness (C2SP tlog-witness) and cosignatures: every protocol answer, and forks refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.appends import EntryKey, NewEntry
from ledger.checkpoint import Checkpoint
from ledger.cosignature import CosignatureVerifier, Cosigner
from ledger.database import Database
from ledger.note import NoteError, NoteSigner, sign_note
from ledger.storage import MerkleLog
from ledger.witness import SIZE_CONTENT_TYPE, Witness, submission_body

ORIGIN = "test.example/log"


class Log:
    """A log under test: its entries, and checkpoints signed with its key."""

    def __init__(self, signer: NoteSigner) -> None:
        self.signer = signer
        self.tree = MerkleLog(Database.sqlite_memory())

    def add(self, *data: bytes) -> None:
        start = self.tree.size
        self.tree.append([NewEntry(EntryKey("e", start + i), d) for i, d in enumerate(data)])

    def note(self) -> str:
        checkpoint = Checkpoint(self.signer.name, self.tree.size, self.tree.root())
        return sign_note(checkpoint.text(), self.signer)

    def submit(self, witness: Witness, old: int) -> tuple[int, str]:
        proof = self.tree.consistency_proof(old, self.tree.size) if old > 0 else []
        answer = witness.add_checkpoint(submission_body(old, proof, self.note()))
        return answer.status, answer.body


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def witness(tmp_path: Path, signer: NoteSigner) -> Witness:
    return Witness(tmp_path / "w.db", Cosigner.generate("witness.test/w1"), [signer.verifier])


def test_a_growing_log_is_cosigned_and_the_cosignature_verifies(
    witness: Witness, signer: NoteSigner
) -> None:
    log = Log(signer)
    log.add(b"a", b"b", b"c")
    status, line = log.submit(witness, 0)
    assert status == 200
    assert witness.cosigner.verifier.timestamp(log.note() + line) is not None
    log.add(b"d", b"e")
    assert log.submit(witness, 3)[0] == 200
    assert witness.latest(ORIGIN) == (5, log.tree.root())
    assert log.submit(witness, 5)[0] == 200  # the same checkpoint again: still cosigned


def test_a_stale_old_size_gets_409_with_the_witness_size(
    witness: Witness, signer: NoteSigner
) -> None:
    log = Log(signer)
    log.add(b"a", b"b")
    log.submit(witness, 0)
    log.add(b"c")
    answer = witness.add_checkpoint(submission_body(0, [], log.note()))
    assert (answer.status, answer.body, answer.content_type) == (409, "2\n", SIZE_CONTENT_TYPE)


def test_a_fork_at_the_same_size_is_refused_and_kept_as_evidence(
    witness: Witness, signer: NoteSigner
) -> None:
    honest, forked = Log(signer), Log(signer)
    honest.add(b"a", b"b", b"c")
    forked.add(b"a", b"b", b"X")  # the same size, another history
    assert honest.submit(witness, 0)[0] == 200
    status, _ = forked.submit(witness, 3)
    assert status == 409
    assert witness.latest(ORIGIN) == (3, honest.tree.root())
    assert witness.refusals() == [(ORIGIN, 409, "a second root for one tree size (a fork)")]


def test_a_rewritten_entry_fails_the_consistency_proof(
    witness: Witness, signer: NoteSigner
) -> None:
    honest, rewritten = Log(signer), Log(signer)
    honest.add(b"a", b"b", b"c")
    rewritten.add(b"a", b"B", b"c", b"d")  # entry 1 rewritten, then grown
    assert honest.submit(witness, 0)[0] == 200
    status, body = rewritten.submit(witness, 3)
    assert status == 422
    assert "not consistent" in body
    assert witness.latest(ORIGIN) == (3, honest.tree.root())


def test_unknown_logs_bad_signatures_and_malformed_requests(
    witness: Witness, signer: NoteSigner
) -> None:
    log = Log(signer)
    log.add(b"a")
    stranger = Log(NoteSigner.generate("other.example/log"))
    stranger.add(b"a")
    assert stranger.submit(witness, 0)[0] == 404
    impostor = Log(NoteSigner.generate(ORIGIN))  # right origin, wrong key
    impostor.add(b"a")
    assert impostor.submit(witness, 0)[0] == 403
    note = log.note()
    for body in [
        b"",
        b"old 2\n\n" + note.encode(),  # old size larger than the checkpoint
        b"old 0\nAAAA\n\n" + note.encode(),  # not a 32-byte hash
        b"old 01\n\n" + note.encode(),
        b"new 0\n\n" + note.encode(),
        b"old 0\n" + b"A" * 44 + b"\n\n" + note.encode(),  # a proof from size 0
        b"\xff\xfe",
    ]:
        assert witness.add_checkpoint(body).status == 400, body
    assert witness.latest(ORIGIN) is None


def test_cosigner_keys_round_trip_and_a_forged_cosignature_is_caught() -> None:
    cosigner = Cosigner.generate("witness.test/w1")
    assert str(Cosigner.parse(str(cosigner)).verifier) == str(cosigner.verifier)
    assert CosignatureVerifier.parse(str(cosigner.verifier)) == cosigner.verifier
    log = Log(NoteSigner.generate(ORIGIN))
    log.add(b"a")
    note = log.note()
    line = cosigner.cosign(Checkpoint(ORIGIN, 1, log.tree.root()).text(), 1_700_000_000)
    assert cosigner.verifier.timestamp(note + line) == 1_700_000_000
    other = Log(log.signer)
    other.add(b"b")
    with pytest.raises(NoteError):  # the same line on another checkpoint
        cosigner.verifier.timestamp(other.note() + line)
    assert Cosigner.generate("witness.test/w2").verifier.timestamp(note + line) is None
