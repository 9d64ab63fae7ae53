"""The decoders `vitaltrail bench fuzz` feeds, and a valid encoding of each to start from
(the read side's are in :mod:`vitaltrail.bench.fuzz_access`, the FHIR API's in
:mod:`vitaltrail.bench.fuzz_fhir`).

Every decoder that takes outside bytes is a :class:`Target`: the function a caller runs on
the bytes, the one error type it documents, and seeds (valid encodings made here with real
keys, a real ledger, proofs and a witness cosignature). Targets that must never raise at all
(the ingest checks, :func:`~ledger.verifier.verify_bundle`) document no error. Text decoders
get the input as UTF-8 with undecodable bytes as lone surrogates (what a JSON ``"\\udc80"``
escape yields), so they meet text no encoder would write.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.cose import parse_sign1, sign1
from devices.errors import CoseError, PayloadError
from devices.keys import DeviceSigner
from devices.reading import Reading, Sample, decode_reading, encode_reading
from devices.registry import DeviceRecord
from ingest.checks import Limits, Rejected, check_message
from ledger.appends import NewEntry
from ledger.bundle import BundleFormatError, ProofBundle, ProvenEntry
from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.cosignature import Cosigner, add_signature_lines
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryError, EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteError, NoteSigner, NoteVerifier, open_note, parse_note, sign_note
from ledger.tlog_proof import ProofFormatError, TlogProof
from ledger.verifier import Policy, verify_bundle
from ledger.witness import BadRequest, parse_submission, submission_body

ORIGIN = "fuzz.example/ledger"
DEVICE = "ward1-bed1-band"
NOW_MS = 1_763_700_000_000


class Unexpected(Exception):
    """A target that must answer with a verdict answered with something worse."""


@dataclass(frozen=True)
class Target:
    name: str
    decode: Callable[[bytes], object]
    errors: tuple[type[Exception], ...]  # the documented error; () for "never raises"
    seeds: tuple[bytes, ...]
    kind: str  # "cbor", "text", "json" or "jwt": which structure-aware mutations apply
    # jwt: sign an edited (header, payload) with the key the decoder trusts, so the checks
    # behind the signature check meet hostile claims too
    resign: Callable[[Mapping[str, Any], bytes], bytes] | None = None


def text(data: bytes) -> str:
    """Outside bytes as the str a decoder of text receives (lone surrogates for bad UTF-8)."""
    return data.decode("utf-8", "surrogateescape")


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


@dataclass(frozen=True)
class Corpus:
    """Valid encodings of every format, made once with fixed keys."""

    signer: DeviceSigner
    ledger_key: NoteSigner
    witness: Cosigner
    messages: tuple[bytes, ...]
    payloads: tuple[bytes, ...]
    entries: tuple[bytes, ...]
    statements: tuple[bytes, ...]
    bundles: tuple[bytes, ...]
    proofs: tuple[bytes, ...]
    notes: tuple[bytes, ...]
    checkpoints: tuple[bytes, ...]
    cosignature_lines: tuple[bytes, ...]
    submissions: tuple[bytes, ...]
    cosign_base: str  # the last checkpoint as the log signed it, before any cosignature


def _readings() -> list[Reading]:
    hr, temp = Sample("8867-4", "/min", 72, NOW_MS), Sample("8310-5", "Cel", 36.6, NOW_MS)
    return [
        Reading(DEVICE, 0, (hr,)),
        Reading(DEVICE, 1, (hr, temp)),
        Reading(DEVICE, 2**40, (temp,) * 12),
        Reading(DEVICE, 3, (Sample("59408-5", "%", 97.5, NOW_MS - 1),)),
        Reading(DEVICE, 4, (hr,), battery_pct=87),
    ]


@cache
def corpus() -> Corpus:
    signer = DeviceSigner(_key("device"))
    ledger_key = NoteSigner(ORIGIN, _key("ledger"))
    witness = Cosigner("fuzz.example/witness", _key("witness"))
    payloads = [encode_reading(r) for r in _readings()]
    messages = [sign1(signer, p) for p in payloads]
    registration = DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, DEVICE, signer.key, "p-1")
    revocation = DeviceKeyStatement(EntryKind.DEVICE_REVOKED, DEVICE, signer.key, None)
    entries = [
        registration.entry(NOW_MS),
        *(
            NewEntry(reading_key(DEVICE, i), LedgerEntry(EntryKind.READING, NOW_MS, m).encode())
            for i, m in enumerate(messages)
        ),
        revocation.entry(NOW_MS + 9),
    ]
    with tempfile.TemporaryDirectory(prefix="vitaltrail-fuzz-") as work:
        bundles, notes = _bundles(Path(work), ledger_key, witness, entries)
    proofs = [b.reading.proof.text() for b in bundles]
    checkpoint_texts = [open_note(n, [ledger_key.verifier])[0].text for n in notes]
    first = Checkpoint.parse(checkpoint_texts[0])
    return Corpus(
        signer=signer,
        ledger_key=ledger_key,
        witness=witness,
        messages=tuple(messages),
        payloads=tuple(payloads),
        entries=tuple(e.data for e in entries),
        statements=(registration.body(), revocation.body()),
        bundles=tuple(b.to_json().encode() for b in bundles),
        proofs=tuple(p.encode() for p in proofs),
        notes=tuple(n.encode() for n in notes),
        checkpoints=(*(t.encode() for t in checkpoint_texts), b"o\n0\n" + b"A" * 43 + b"=\n"),
        cosignature_lines=(
            witness.cosign(checkpoint_texts[-1], NOW_MS // 1000).encode(),
            Cosigner("fuzz.example/other", _key("other")).cosign(checkpoint_texts[-1], 1).encode(),
        ),
        cosign_base=sign_note(checkpoint_texts[-1], ledger_key),
        submissions=(
            submission_body(0, [], notes[0]),
            submission_body(first.size, [bytes(32)] * 3, notes[-1]),
        ),
    )


def _bundles(
    work: Path, ledger_key: NoteSigner, witness: Cosigner, entries: list[NewEntry]
) -> tuple[list[ProofBundle], list[str]]:
    """A real ledger: a key registration, readings, then the key's revocation, in two blocks,
    the second cosigned by the witness; a bundle of each reading against each block."""
    ledger = Ledger(work / "ledger.db", ledger_key)
    ledger.append(entries[:-1])
    first = ledger.seal(NOW_MS)
    ledger.append(entries[-1:])
    second = ledger.seal(NOW_MS + 1)
    assert first is not None
    assert second is not None
    line = witness.cosign(second.checkpoint.text(), NOW_MS // 1000)
    ledger.blocks.add_cosignature(second.height, witness.name, line)
    ledger.close()
    reader = LedgerReader(work / "ledger.db")
    try:
        bundles: list[ProofBundle] = []
        for block in (first, second):
            proven = [
                ProvenEntry(reader.log.entry(i) or b"", reader.tlog_proof(i, block))
                for i in range(block.tree_size)
            ]
            revocation = proven[-1] if block is second else None
            bundles.extend(
                ProofBundle(p, proven[0], revocation) for p in proven[1 : len(entries) - 1]
            )
        notes = [reader.blocks.cosigned_note(b) for b in (first, second)]
    finally:
        reader.close()
    return bundles, notes


@dataclass(frozen=True)
class Verdict:
    """The answer of a target that never raises: None if it accepted the input, else why not."""

    refused: str | None


def _checked(data: bytes) -> Verdict:
    """The ingest checks, called directly (not through BatchChecker's catch-all)."""
    c = corpus()
    record = DeviceRecord(DEVICE, "p-1", c.signer.key, 0, None)
    verdict = check_message(DEVICE, data, {c.signer.key.kid: record}.get, NOW_MS, Limits())
    return Verdict(verdict.reason.value if isinstance(verdict, Rejected) else None)


def _verified(data: bytes) -> Verdict:
    c = corpus()
    policy = Policy(c.ledger_key.verifier, (c.witness.verifier,), 1)
    report = verify_bundle(data, policy)
    internal = [check for check in report.checks if check.detail.startswith("internal error")]
    if internal:
        raise Unexpected(f"{internal[0].name}: {internal[0].detail}")
    return Verdict(None if report.ok else f"{report.failed()[0].name} failed")


def _statement(data: bytes) -> object:
    """A registration's body, else a revocation's."""
    try:
        return DeviceKeyStatement.from_entry(LedgerEntry(EntryKind.DEVICE_REGISTERED, NOW_MS, data))
    except EntryError:
        return DeviceKeyStatement.from_entry(LedgerEntry(EntryKind.DEVICE_REVOKED, NOW_MS, data))


def _cosigned(data: bytes) -> object:
    c = corpus()
    return c.witness.verifier.timestamp(add_signature_lines(c.cosign_base, text(data)))


def _submission(data: bytes) -> object:
    """What the witness does with a request before it looks at its own state."""
    submission = parse_submission(data)
    Checkpoint.parse(parse_note(submission.note).text)
    return open_note(submission.note, [corpus().ledger_key.verifier])


def targets() -> list[Target]:
    from vitaltrail.bench.fuzz_access import access_targets  # it builds on this corpus
    from vitaltrail.bench.fuzz_fhir import fhir_targets  # and this on its Target

    c = corpus()
    verifier = c.ledger_key.verifier
    return [*_ledger_targets(c, verifier), *access_targets(), *fhir_targets()]


def _ledger_targets(c: Corpus, verifier: NoteVerifier) -> list[Target]:
    return [
        Target("cose", parse_sign1, (CoseError,), c.messages, "cbor"),
        Target("reading", decode_reading, (PayloadError,), c.payloads, "cbor"),
        Target("ingest checks", _checked, (), c.messages, "cbor"),
        Target("ledger entry", LedgerEntry.decode, (EntryError,), c.entries, "cbor"),
        Target("device key statement", _statement, (EntryError,), c.statements, "cbor"),
        Target("proof bundle", ProofBundle.from_json, (BundleFormatError,), c.bundles, "json"),
        Target("verify_bundle", _verified, (), c.bundles, "json"),
        Target(
            "tlog-proof", lambda d: TlogProof.parse(text(d)), (ProofFormatError,), c.proofs, "text"
        ),
        Target(
            "signed note", lambda d: open_note(text(d), [verifier]), (NoteError,), c.notes, "text"
        ),
        Target("cosignature", _cosigned, (NoteError,), c.cosignature_lines, "text"),
        Target(
            "checkpoint",
            lambda d: Checkpoint.parse(text(d)),
            (CheckpointError,),
            c.checkpoints,
            "text",
        ),
        Target(
            "witness request",
            _submission,
            (BadRequest, NoteError, CheckpointError),
            c.submissions,
            "text",
        ),
    ]
