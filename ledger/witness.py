"""A transparency-log witness (C2SP tlog-witness): cosign a checkpoint only if it extends the last.

The witness remembers, per log origin, the latest checkpoint it cosigned. A log submits a new
checkpoint with a consistency proof from that size (``add-checkpoint``); the witness checks
the log's signature, the proof, and that an equal size has an equal root, then records the
new checkpoint and answers with its cosignature - all under one database lock, so two
requests can never roll the recorded size back. A log that forks its history (two
checkpoints of one size, or a rewritten entry) cannot get a cosignature for the fork, and
the refused submission is kept as evidence.

Status codes, as the protocol defines them: 400 malformed request, 403 no valid signature
from the log's key, 404 unknown log, 409 old size is not the recorded size (the body tells
the recorded size) or an equal size with another root, 422 consistency proof does not hold.
"""

from __future__ import annotations

import base64
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.cosignature import Cosigner
from ledger.merkle import HASH_SIZE, VerificationError, verify_consistency
from ledger.note import NoteError, NoteVerifier, open_note, parse_note

log = logging.getLogger("vitaltrail.witness")

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    at_s        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    origin      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    request     BLOB NOT NULL,
    at_s        INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class WitnessResponse:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Submission:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


class BadRequest(Exception):
    """An add-checkpoint body that does not follow the protocol."""


def parse_submission(body: bytes) -> Submission:
    """``old <size>``, up to 63 base64 proof lines, an empty line, then the checkpoint note."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest("request is too large")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest("request is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("expected the old size, proof lines, an empty line, then a checkpoint")
    lines = head.split("\n")
    old = lines[0].removeprefix("old ")
    if old == lines[0] or _SIZE.fullmatch(old) is None or int(old) > 2**64 - 1:
        raise BadRequest("the first line must be 'old <size>' in decimal")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadRequest(f"at most {MAX_PROOF_LINES} consistency proof lines")
    try:
        proof = tuple(base64.b64decode(line, validate=True) for line in lines[1:])
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise BadRequest("a proof line is not base64") from exc
    if any(len(h) != HASH_SIZE for h in proof):
        raise BadRequest(f"each proof line is a {HASH_SIZE}-byte hash")
    return Submission(int(old), proof, note)


def submission_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class Witness:
    """The witness's state and its one operation. Safe to call from several threads."""

    def __init__(self, state_path: Path, cosigner: Cosigner, logs: list[NoteVerifier]) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_path, timeout=30, check_same_thread=False)
        self._db.isolation_level = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.cosigner = cosigner
        self._logs: dict[str, list[NoteVerifier]] = {}
        for key in logs:
            self._logs.setdefault(key.name, []).append(key)

    def close(self) -> None:
        self._db.close()

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        row = self._db.execute(
            "SELECT size, root FROM latest WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def refusals(self) -> list[tuple[str, int, str]]:
        """What the witness refused to cosign: ``(origin, status, reason)``, oldest first."""
        rows = self._db.execute("SELECT origin, status, reason FROM refused ORDER BY id")
        return [(str(o), int(s), str(r)) for o, s, r in rows]

    def add_checkpoint(self, body: bytes) -> WitnessResponse:
        try:
            submission = parse_submission(body)
            checkpoint = Checkpoint.parse(parse_note(submission.note).text)
        except (BadRequest, NoteError, CheckpointError) as exc:
            return WitnessResponse(400, f"{exc}\n")
        keys = self._logs.get(checkpoint.origin)
        if keys is None:
            return WitnessResponse(404, f"unknown log {checkpoint.origin!r}\n")
        try:
            note, _ = open_note(submission.note, keys)
        except NoteError as exc:
            return WitnessResponse(403, f"{exc}\n")
        if submission.old_size > checkpoint.size:
            return WitnessResponse(400, "the old size is larger than the checkpoint's\n")
        if submission.old_size == 0 and submission.proof:
            return WitnessResponse(400, "a consistency proof from size 0 must be empty\n")
        self._db.execute("BEGIN IMMEDIATE")  # check and record atomically
        try:
            response = self._judge(submission, checkpoint, note.text, body)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return response

    def _judge(
        self, submission: Submission, checkpoint: Checkpoint, text: str, body: bytes
    ) -> WitnessResponse:
        recorded = self.latest(checkpoint.origin)
        recorded_size, recorded_root = recorded if recorded else (0, b"")
        if submission.old_size != recorded_size:
            return WitnessResponse(409, f"{recorded_size}\n", SIZE_CONTENT_TYPE)
        if recorded and checkpoint.size == recorded_size and checkpoint.root != recorded_root:
            return self._refuse(checkpoint, 409, "a second root for one tree size (a fork)", body)
        if recorded and checkpoint.size > recorded_size:
            try:
                verify_consistency(
                    recorded_size, checkpoint.size, recorded_root, checkpoint.root, submission.proof
                )
            except VerificationError as exc:
                return self._refuse(checkpoint, 422, f"not consistent: {exc}", body)
        now = int(time.time())
        self._db.execute(
            "INSERT INTO latest VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET"
            " size = excluded.size, root = excluded.root, note = excluded.note, at_s = excluded.at_s",
            (checkpoint.origin, checkpoint.size, checkpoint.root, submission.note, now),
        )
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return WitnessResponse(200, self.cosigner.cosign(text, now))

    def _refuse(
        self, checkpoint: Checkpoint, status: int, reason: str, body: bytes
    ) -> WitnessResponse:
        log.warning("refused %s at size %d: %s", checkpoint.origin, checkpoint.size, reason)
        self._db.execute(
            "INSERT INTO refused (origin, status, reason, request, at_s) VALUES (?, ?, ?, ?, ?)",
            (checkpoint.origin, status, reason, body, int(time.time())),
        )
        return WitnessResponse(status, f"{reason}\n")
