"""A recorded reading and its proof bundle, read from the ledger and the registry.

One place for what the API's reading and proof endpoints and the demo's sample bundle share.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.cose import parse_sign1
from devices.reading import Reading, decode_reading
from devices.registry import DeviceRegistry
from ledger.bundle import ProofBundle
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import LedgerReader


class NoSuchReading(LookupError):
    """No ledger entry, or one that is not a reading, or its device is not registered."""


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
    return RecordedReading(index, data, entry, decode_reading(parse_sign1(entry.body).payload))


def proof_bundle_for(ledger: LedgerReader, registry: DeviceRegistry, index: int) -> ProofBundle:
    """The bundle of reading ``index`` against the latest block."""
    recorded = recorded_reading(ledger, index)
    device = registry.get(recorded.reading.device_id)
    if device is None:
        raise NoSuchReading(f"device {recorded.reading.device_id} is not registered")
    try:
        proof = ledger.tlog_proof(index)
    except LookupError as exc:
        raise NotSealed(str(exc)) from exc
    return ProofBundle(recorded.data, device.device_id, device.key.public_bytes, proof)
