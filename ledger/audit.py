"""The auditor: rebuild the log from its stored entries and check everything the server signed.

One pass over the entries, in order:

* each leaf is a well-formed ledger entry; a reading's key was registered earlier in the log
  and not revoked before it, and the device's signature verifies with that key;
* the tree is rebuilt from the leaves, and every stored tile hash must equal the rebuilt one
  (proofs are served from the tiles);
* at each block's tree size the rebuilt root must equal the root its checkpoint signs; the
  checkpoint's signature verifies with the pinned ledger key, heights count up from 0, sizes
  never shrink, and each block's ``prev_hash`` is the hash of the block before.

The report lists what is wrong in log order; the first finding is where the record stops
being trustworthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import decode_reading
from ledger.blocks import GENESIS_PREV_HASH, Block
from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryError, EntryKind, LedgerEntry
from ledger.ledger import LedgerReader
from ledger.merkle import EMPTY_ROOT, fold_subtrees, hash_children, hash_leaf
from ledger.note import NoteError, NoteVerifier, open_note
from ledger.tiles import SLOTS, TILE_HEIGHT, TileKey, blank_tile, locate, read_slot, write_slot

MAX_FINDINGS = 100


@dataclass(frozen=True)
class Finding:
    check: str  # which rule broke: entry, device key, device signature, tile, block ...
    where: str  # "entry 17", "block 3", "tile 0/12"
    detail: str


@dataclass
class AuditReport:
    entries: int = 0
    blocks: int = 0
    tiles: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, where: str, detail: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(check, where, detail))


@dataclass
class _KeyState:
    statement: DeviceKeyStatement
    registered_at: int
    revoked_at: int | None = None


class _Rebuild:
    """The tree rebuilt leaf by leaf: a frontier for roots, and tiles to compare as they fill."""

    def __init__(self) -> None:
        self.size = 0
        self.frontier: list[tuple[int, bytes]] = []
        self.tiles: dict[TileKey, bytearray] = {}

    def add(self, leaf: bytes) -> list[tuple[TileKey, bytearray]]:
        """Add a leaf; return the tiles it completed."""
        completed: list[tuple[TileKey, bytearray]] = []
        self._put(0, self.size, leaf, completed)
        self.frontier.append((0, leaf))
        while len(self.frontier) >= 2 and self.frontier[-1][0] == self.frontier[-2][0]:
            level, right = self.frontier.pop()
            _, left = self.frontier.pop()
            parent = hash_children(left, right)
            self._put(level + 1, ((self.size + 1) >> (level + 1)) - 1, parent, completed)
            self.frontier.append((level + 1, parent))
        self.size += 1
        return completed

    def _put(
        self, level: int, index: int, value: bytes, completed: list[tuple[TileKey, bytearray]]
    ) -> None:
        key, slot = locate(level, index)
        tile = self.tiles.setdefault(key, blank_tile())
        write_slot(tile, slot, value)
        if slot == SLOTS - 1:  # the tile's last node: nothing more will change in it
            completed.append((key, self.tiles.pop(key)))

    def root(self) -> bytes:
        return fold_subtrees([h for _, h in self.frontier]) if self.frontier else EMPTY_ROOT


def audit(reader: LedgerReader, ledger_key: NoteVerifier) -> AuditReport:
    report = AuditReport()
    blocks = iter(reader.blocks.all())
    block = _next_block(blocks, None, ledger_key, report)
    while block is not None and block.tree_size == 0:
        _check_root(block, EMPTY_ROOT, report)
        block = _next_block(blocks, block, ledger_key, report)
    keys: dict[bytes, _KeyState] = {}
    tree = _Rebuild()
    size = reader.log.stored_size()
    for index, data in reader.log.entries(0, size):
        _check_entry(index, data, keys, report)
        for key, rebuilt in tree.add(hash_leaf(data)):
            _check_tile(reader, key, rebuilt, report)
        report.entries += 1
        while block is not None and block.tree_size == tree.size:
            _check_root(block, tree.root(), report)
            block = _next_block(blocks, block, ledger_key, report)
    if report.entries != size:
        report.add("entry", f"entry {report.entries}", f"the log says {size} entries are stored")
    for key, rebuilt in tree.tiles.items():  # the unfilled edge of the tree
        _check_tile(reader, key, rebuilt, report)
    while block is not None:
        report.add(
            "block", f"block {block.height}", f"covers {block.tree_size} entries, beyond the log"
        )
        block = _next_block(blocks, block, ledger_key, report)
    return report


def _next_block(
    blocks: Iterator[Block], previous: Block | None, ledger_key: NoteVerifier, report: AuditReport
) -> Block | None:
    block = next(blocks, None)
    if block is None:
        return None
    report.blocks += 1
    where = f"block {block.height}"
    expected_height = 0 if previous is None else previous.height + 1
    expected_prev = GENESIS_PREV_HASH if previous is None else previous.hash()
    if block.height != expected_height:
        report.add(
            "chain",
            where,
            f"follows block {expected_height - 1}, expected height {expected_height}",
        )
    if block.prev_hash != expected_prev:
        report.add("chain", where, "prev_hash is not the hash of the block before")
    if previous is not None and block.tree_size < previous.tree_size:
        report.add("chain", where, f"tree size {block.tree_size} shrinks from {previous.tree_size}")
    try:
        note, _ = open_note(block.note, [ledger_key])
        checkpoint = Checkpoint.parse(note.text)
        if checkpoint.origin != ledger_key.name or checkpoint.size != block.tree_size:
            report.add("block signature", where, "the checkpoint names another log or size")
    except (NoteError, CheckpointError) as exc:
        report.add("block signature", where, str(exc))
    return block


def _check_root(block: Block, root: bytes, report: AuditReport) -> None:
    try:
        signed_root = block.checkpoint.root
    except (NoteError, CheckpointError):
        return  # reported with the block's signature
    if signed_root != root:
        report.add(
            "tree",
            f"block {block.height}",
            f"signed root differs from the root rebuilt at size {block.tree_size}",
        )


def _check_tile(
    reader: LedgerReader, key: TileKey, rebuilt: bytearray, report: AuditReport
) -> None:
    report.tiles += 1
    stored = reader.log.stored_tile(key)
    where = f"tile {key[0]}/{key[1]}"
    if stored is None:
        report.add("tile", where, "missing")
        return
    for slot in range(SLOTS):
        want = read_slot(rebuilt, slot)
        if want is not None and read_slot(stored, slot) != want:
            level = key[0] * TILE_HEIGHT
            report.add(
                "tile",
                where,
                f"a stored hash (slot {slot}, from tree level {level}) differs from the rebuilt one",
            )
            return


def _check_entry(
    index: int, data: bytes, keys: dict[bytes, _KeyState], report: AuditReport
) -> None:
    where = f"entry {index}"
    try:
        entry = LedgerEntry.decode(data)
        if entry.kind is EntryKind.READING:
            _check_reading(index, entry, keys, report)
        else:
            _note_key_statement(index, DeviceKeyStatement.from_entry(entry), keys, report)
    except (EntryError, ReadingError) as exc:
        report.add("entry", where, str(exc))


def _note_key_statement(
    index: int, statement: DeviceKeyStatement, keys: dict[bytes, _KeyState], report: AuditReport
) -> None:
    kid = statement.key.kid
    state = keys.get(kid)
    where = f"entry {index}"
    if statement.kind is EntryKind.DEVICE_REGISTERED:
        if state is not None:
            report.add("device key", where, f"key {kid.hex()[:16]} registered a second time")
        else:
            keys[kid] = _KeyState(statement, index)
    elif state is None:
        report.add("device key", where, f"key {kid.hex()[:16]} revoked before any registration")
    elif state.revoked_at is not None:
        report.add("device key", where, f"key {kid.hex()[:16]} revoked a second time")
    else:
        state.revoked_at = index


def _check_reading(
    index: int, entry: LedgerEntry, keys: dict[bytes, _KeyState], report: AuditReport
) -> None:
    where = f"entry {index}"
    message = parse_sign1(entry.body)
    state = keys.get(message.kid)
    if state is None:
        report.add(
            "device key", where, f"signed by key {message.kid.hex()[:16]}, not registered before it"
        )
        return
    if state.revoked_at is not None:
        report.add("device key", where, f"signed by a key revoked at entry {state.revoked_at}")
    try:
        message.verify(state.statement.key)
    except ReadingError as exc:
        report.add("device signature", where, str(exc))
        return
    reading = decode_reading(message.payload)
    if reading.device_id != state.statement.device_id:
        report.add(
            "device key",
            where,
            f"a reading of {reading.device_id} under {state.statement.device_id}'s key",
        )
