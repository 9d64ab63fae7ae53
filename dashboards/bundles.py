"""A recorded reading and its proof bundle, read from the ledger and the registry.

One place for what the API's reading and proof endpoints and the demo's sample bundle share.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import Reading, decode_reading
from ledger.bundle import ProofBundle, ProvenEntry
from ledger.device_keys import REGISTERED, REVOKED, key_entry_key
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader


class NoSuchReading(LookupError):
    """No ledger entry, or one that is not a reading, or its key is not registered."""


class NotSealed(LookupError):
    """The reading is recorded but no signed checkpoint covers it yet."""


@dataclass(frozen=True)
class RecordedReading:
    index: int
    data: bytes  # the leaf data, as hashed into the tree
    entry: LedgerEntry
    reading: Reading


def recorded_reading(ledger: LedgerReader, index: int) -> RecordedReading:
    data = ledger.log.entry(index)
    if data is None:
        raise NoSuchReading(f"no ledger entry {index}")
    entry = LedgerEntry.decode(data)
    if entry.kind is not EntryKind.READING:
        raise NoSuchReading(f"ledger entry {index} is not a reading")
    try:
        reading = decode_reading(parse_sign1(entry.body).payload)
    except ReadingError as exc:  # logged before today's rules (audit reports it)
        raise NoSuchReading(f"ledger entry {index} is not a valid reading: {exc}") from exc
    return RecordedReading(index, data, entry, reading)


def proof_bundle_for(ledger: LedgerReader, index: int, cosignatures: int = 0) -> ProofBundle:
    """The bundle of reading ``index`` against the latest block with ``cosignatures``
    witness cosignatures: the reading, its key's registration (and revocation, if the block
    holds one), each with its inclusion proof."""
    recorded = recorded_reading(ledger, index)
    block = ledger.blocks.latest_cosigned(cosignatures)
    if block is None or index >= block.tree_size:
        witnessed = f" with {cosignatures} cosignatures" if cosignatures else ""
        raise NotSealed(f"entry {index} is not sealed in a block{witnessed} yet")
    kid = parse_sign1(recorded.entry.body).kid
    registered = ledger.log.index_of(key_entry_key(kid, REGISTERED))
    if registered is None or registered >= block.tree_size:
        raise NoSuchReading(f"the key of entry {index} has no sealed registration")
    revoked = ledger.log.index_of(key_entry_key(kid, REVOKED))

    def proven(i: int) -> ProvenEntry:
        return ProvenEntry(ledger.log.entry(i) or b"", ledger.tlog_proof(i, block))

    return ProofBundle(
        proven(index),
        proven(registered),
        proven(revoked) if revoked is not None and revoked < block.tree_size else None,
    )


def first_reading(ledger: LedgerReader, within: int = 10_000) -> int | None:
    """The index of the log's first reading (the first entries register device keys)."""
    for index, data in ledger.log.entries(0, within):
        if LedgerEntry.decode(data).kind is EntryKind.READING:
            return index
    return None
