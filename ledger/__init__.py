"""The ledger: an RFC 9162 Merkle log of typed entries, sealed into signed blocks.

It knows nothing of MQTT. Checkpoints are C2SP tlog-checkpoints signed as C2SP signed
notes; proofs travel as C2SP tlog-proofs inside a proof bundle that
:func:`~ledger.verifier.verify_bundle` checks offline against pinned keys.

Errors::

    VerificationError    a Merkle proof does not hold            (ledger.merkle)
    NoteError            a signed note or key is malformed/unsigned (ledger.note)
    CheckpointError      note text is not a checkpoint          (ledger.checkpoint)
    ProofFormatError     text is not a tlog-proof               (ledger.tlog_proof)
    BundleFormatError    a document is not a proof bundle       (ledger.bundle)
    EntryError           leaf data is not a ledger entry        (ledger.entries)
"""

from ledger.appends import AppendResult, AppendStatus, EntryKey, NewEntry
from ledger.blocks import Block
from ledger.bundle import ProofBundle
from ledger.checkpoint import Checkpoint
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteSigner, NoteVerifier
from ledger.verifier import Report, verify_bundle

__all__ = [
    "AppendResult",
    "AppendStatus",
    "Block",
    "Checkpoint",
    "EntryKey",
    "EntryKind",
    "Ledger",
    "LedgerEntry",
    "LedgerReader",
    "NewEntry",
    "NoteSigner",
    "NoteVerifier",
    "ProofBundle",
    "Report",
    "reading_key",
    "verify_bundle",
]
