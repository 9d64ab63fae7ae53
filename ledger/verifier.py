"""The offline verifier: is this reading exactly what the device sent, and is it in the log?

Three checks, each reported on its own so a user sees which one failed:

1. **device signature** - the entry holds a COSE_Sign1 reading signed by the bundled device key;
2. **checkpoint signature** - the checkpoint is signed by the pinned ledger key;
3. **inclusion proof** - the entry's leaf hash is in the tree the checkpoint names.

Only pinned keys are trusted; nothing comes from the server at verification time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.keys import DeviceKey
from devices.reading import Reading, decode_reading
from ledger.bundle import BundleFormatError, ProofBundle
from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.entries import EntryError, EntryKind, LedgerEntry
from ledger.merkle import VerificationError, hash_leaf, verify_inclusion
from ledger.note import NoteError, NoteVerifier, open_note, parse_note


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    reading: Reading | None = None
    index: int | None = None
    checkpoint: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def verify_bundle(document: str | bytes, ledger_key: NoteVerifier) -> Report:
    """Check a proof bundle against the pinned ledger key; never raises on bad input."""
    report = Report()
    try:
        bundle = ProofBundle.from_json(document)
    except BundleFormatError as exc:
        report.checks.append(Check("bundle format", False, str(exc)))
        return report
    report.index = bundle.proof.index
    _run(report, "device signature", lambda: _check_device_signature(bundle, report))
    _run(report, "checkpoint signature", lambda: _check_checkpoint(bundle, ledger_key, report))
    _run(report, "inclusion proof", lambda: _check_inclusion(bundle))
    return report


def _run(report: Report, name: str, check: Callable[[], str]) -> None:
    try:
        detail = check()
    except (
        ReadingError,
        EntryError,
        NoteError,
        CheckpointError,
        VerificationError,
        ValueError,
    ) as exc:
        report.checks.append(Check(name, False, str(exc)))
    else:
        report.checks.append(Check(name, True, detail))


def _check_device_signature(bundle: ProofBundle, report: Report) -> str:
    entry = LedgerEntry.decode(bundle.entry)
    if entry.kind is not EntryKind.READING:
        raise EntryError(f"entry is a {entry.kind.name.lower()}, not a reading")
    message = parse_sign1(entry.body)
    key = DeviceKey(bundle.device_public_key)
    message.verify(key)
    reading = decode_reading(message.payload)
    if reading.device_id != bundle.device_id:
        raise ValueError(
            f"the reading names device {reading.device_id}, the key {bundle.device_id}"
        )
    report.reading = reading
    return f"reading {reading.device_id}#{reading.seq} signed by key {key.kid.hex()[:16]}"


def _check_checkpoint(bundle: ProofBundle, ledger_key: NoteVerifier, report: Report) -> str:
    note, _ = open_note(bundle.proof.checkpoint_note, [ledger_key])
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != ledger_key.name:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the pinned log")
    report.checkpoint = checkpoint
    return f"{checkpoint.origin} at tree size {checkpoint.size}, signed by the pinned key"


def _check_inclusion(bundle: ProofBundle) -> str:
    checkpoint = Checkpoint.parse(parse_note(bundle.proof.checkpoint_note).text)
    verify_inclusion(
        hash_leaf(bundle.entry),
        bundle.proof.index,
        checkpoint.size,
        bundle.proof.hashes,
        checkpoint.root,
    )
    return f"entry {bundle.proof.index} is in the tree of size {checkpoint.size}"
