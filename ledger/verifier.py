"""The offline verifier: is this reading exactly what the device sent, and is it in the log?

Checks, each reported on its own so a user sees which one failed:

1. **checkpoint signature** - the checkpoint is signed by the pinned ledger key;
2. **witness cosignatures** - at least ``quorum`` of the pinned witnesses cosigned it (when
   the policy names witnesses): the log showed everyone this same tree;
3. **device key** - the reading's key was registered, in this log, before the reading was
   logged, and not revoked before it;
4. **device signature** - the entry holds a COSE_Sign1 reading signed by that key;
5. **inclusion proof** - the reading, the registration (and the revocation) are all in the
   tree the checkpoint names.

Only pinned keys are trusted; nothing comes from the server at verification time. Whatever
the document holds, :func:`verify_bundle` answers with a :class:`Report`: each decoder it
calls raises only its own error (devices.boundary), and a check that fails in any other way
(a bug) is a failed check named ``internal error``, logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.cose import SignedMessage, parse_sign1
from devices.errors import ReadingError
from devices.reading import Reading, decode_reading
from ledger.bundle import BundleFormatError, ProofBundle
from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.cosignature import CosignatureVerifier
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryError, EntryKind, LedgerEntry
from ledger.merkle import VerificationError, hash_leaf, verify_inclusion
from ledger.note import NoteError, NoteVerifier, open_note, parse_note

log = logging.getLogger("vitaltrail.verifier")


@dataclass(frozen=True)
class Policy:
    """What a verifier trusts: the log's key, and ``quorum`` of these witnesses."""

    ledger_key: NoteVerifier
    witnesses: tuple[CosignatureVerifier, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise ValueError(f"a quorum of {self.quorum} of {len(self.witnesses)} witnesses")


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


def verify_bundle(document: str | bytes, policy: Policy | NoteVerifier) -> Report:
    """Check a proof bundle against pinned keys; never raises on bad input."""
    if isinstance(policy, NoteVerifier):
        policy = Policy(policy)
    report = Report()
    try:
        bundle = ProofBundle.from_json(document)
    except BundleFormatError as exc:
        report.checks.append(Check("bundle format", False, str(exc)))
        return report
    report.index = bundle.reading.proof.index
    _run(report, "checkpoint signature", lambda: _check_checkpoint(bundle, policy, report))
    if policy.witnesses:
        _run(report, "witness cosignatures", lambda: _check_cosignatures(bundle, policy))
    _run(report, "device key", lambda: _check_device_key(bundle))
    _run(report, "device signature", lambda: _check_device_signature(bundle, report))
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
    except Exception as exc:  # a bug, not a verdict on the bundle: fail safe, keep the trace
        log.exception("unexpected error in the %s check", name)
        report.checks.append(Check(name, False, f"internal error ({type(exc).__name__})"))
    else:
        report.checks.append(Check(name, True, detail))


def _check_checkpoint(bundle: ProofBundle, policy: Policy, report: Report) -> str:
    note, _ = open_note(bundle.reading.proof.checkpoint_note, [policy.ledger_key])
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != policy.ledger_key.name:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the pinned log")
    for name, proven in bundle.proven[1:]:
        if parse_note(proven.proof.checkpoint_note).text != note.text:
            raise CheckpointError(f"the {name} is proven against another checkpoint")
    report.checkpoint = checkpoint
    return f"{checkpoint.origin} at tree size {checkpoint.size}, signed by the pinned key"


def _check_cosignatures(bundle: ProofBundle, policy: Policy) -> str:
    note = bundle.reading.proof.checkpoint_note
    cosigned = [w.name for w in policy.witnesses if w.timestamp(note) is not None]
    if len(cosigned) < policy.quorum:
        raise NoteError(
            f"{len(cosigned)} of the pinned witnesses cosigned ({', '.join(cosigned) or 'none'});"
            f" the policy needs {policy.quorum}"
        )
    return f"cosigned by {len(cosigned)} of {len(policy.witnesses)}: {', '.join(cosigned)}"


def _signed_reading(bundle: ProofBundle) -> SignedMessage:
    entry = LedgerEntry.decode(bundle.reading.entry)
    if entry.kind is not EntryKind.READING:
        raise EntryError(f"entry is a {entry.kind.name.lower()}, not a reading")
    return parse_sign1(entry.body)


def _registration(bundle: ProofBundle) -> DeviceKeyStatement:
    statement = DeviceKeyStatement.from_entry(LedgerEntry.decode(bundle.key_registration.entry))
    if statement.kind is not EntryKind.DEVICE_REGISTERED:
        raise EntryError("the key registration entry is a revocation")
    return statement


def _check_device_key(bundle: ProofBundle) -> str:
    message = _signed_reading(bundle)
    registration = _registration(bundle)
    if registration.key.kid != message.kid:
        raise ValueError("the registered key is not the key the reading names")
    index = bundle.reading.proof.index
    registered_at = bundle.key_registration.proof.index
    if registered_at >= index:
        raise ValueError(f"the key was registered at entry {registered_at}, after the reading")
    if bundle.key_revocation is not None:
        revocation = DeviceKeyStatement.from_entry(LedgerEntry.decode(bundle.key_revocation.entry))
        if revocation.kind is not EntryKind.DEVICE_REVOKED or revocation.key != registration.key:
            raise EntryError("the key revocation entry does not revoke this key")
        revoked_at = bundle.key_revocation.proof.index
        if revoked_at < index:
            raise ValueError(f"the key was revoked at entry {revoked_at}, before the reading")
    return (
        f"key {message.kid.hex()[:16]} of {registration.device_id} (patient"
        f" {registration.patient_id}) registered at entry {registered_at}"
    )


def _check_device_signature(bundle: ProofBundle, report: Report) -> str:
    message = _signed_reading(bundle)
    registration = _registration(bundle)
    message.verify(registration.key)
    reading = decode_reading(message.payload)
    if reading.device_id != registration.device_id:
        raise ValueError(
            f"the reading names device {reading.device_id}, the key {registration.device_id}"
        )
    report.reading = reading
    return f"reading {reading.device_id}#{reading.seq} signed by key {message.kid.hex()[:16]}"


def _check_inclusion(bundle: ProofBundle) -> str:
    for name, proven in bundle.proven:
        checkpoint = Checkpoint.parse(parse_note(proven.proof.checkpoint_note).text)
        try:
            verify_inclusion(
                hash_leaf(proven.entry),
                proven.proof.index,
                checkpoint.size,
                proven.proof.hashes,
                checkpoint.root,
            )
        except VerificationError as exc:
            raise VerificationError(f"{name}: {exc}") from exc
    checkpoint = Checkpoint.parse(parse_note(bundle.reading.proof.checkpoint_note).text)
    return f"entry {bundle.reading.proof.index} is in the tree of size {checkpoint.size}"
