"""The auditor: rebuild the log from its stored entries and check everything the server signed.

One pass over the entries, in order:

* each leaf is a well-formed ledger entry; a reading's key was registered earlier in the log
  and not revoked before it, and the device's signature verifies with that key;
* the tree is rebuilt from the leaves, and every stored tile hash must equal the rebuilt one
  (proofs are served from the tiles);
* at each block's tree size the rebuilt root must equal the root its checkpoint signs; the
  checkpoint's signature verifies with the pinned ledger key, heights count up from 0, sizes
  never shrink, and each block's ``prev_hash`` is the hash of the block before.

Around that pass, every stored row is checked too: each entry page's columns and offsets (a
page that does not decode ends the rebuild there, as a finding naming the page); each ledger
key (a reading's ``(device, seq)``, a device key's event) is used by one entry only, and the
key index holds exactly the entries' keys, each pointing at its entry
(:class:`~ledger.key_index.ExpectedKeys`); each stored cosignature is well-formed, belongs to a
stored block and, for a pinned witness, verifies (:mod:`ledger.audit_cosignatures`). A
tampered row of any table is a finding, never an exception.

The report lists what is wrong in log order; the first finding is where the record stops
being trustworthy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from devices.cose import parse_sign1
from devices.errors import ReadingError
from devices.reading import decode_reading
from ledger.appends import EntryKey
from ledger.audit_cosignatures import CosignatureCheck
from ledger.blocks import GENESIS_PREV_HASH, Block, parse_block_row
from ledger.checkpoint import Checkpoint, CheckpointError
from ledger.cosignature import CosignatureVerifier
from ledger.database import StoredRowError, blob_column, int_column
from ledger.device_keys import REGISTERED, REVOKED, DeviceKeyStatement, key_entry_key
from ledger.entries import EntryError, EntryKind, LedgerEntry, reading_key
from ledger.entry_pages import PAGE_ENTRIES, PageError, decode_page
from ledger.key_index import ExpectedKeys
from ledger.ledger import LedgerReader
from ledger.merkle import EMPTY_ROOT, fold_subtrees, hash_children, hash_leaf
from ledger.note import NoteError, NoteVerifier, open_note
from ledger.tiles import SLOTS, TILE_HEIGHT, TileKey, blank_tile, locate, read_slot, write_slot

MAX_FINDINGS = 100


@dataclass(frozen=True)
class Finding:
    check: str  # which rule broke: entry, entry page, device key, device signature, ledger key,
    # key index, tile, tree, block, block signature, chain, cosignature
    where: str  # "entry 17", "block 3", "tile 0/12"
    detail: str


@dataclass
class AuditReport:
    entries: int = 0
    blocks: int = 0
    tiles: int = 0
    findings: list[Finding] = field(default_factory=list)
    cosigned: Counter[str] = field(default_factory=Counter)  # pinned witness -> blocks verified
    unchecked: Counter[str] = field(default_factory=Counter)  # unpinned witness -> cosignatures
    unkeyed: Counter[str] = field(default_factory=Counter)  # entry kind without a key rule -> n

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


KeyRule = Callable[[LedgerEntry], EntryKey]  # the key an entry of some kind is stored under


def audit(
    reader: LedgerReader,
    ledger_key: NoteVerifier,
    witness_keys: Sequence[CosignatureVerifier] = (),
    key_rules: Mapping[EntryKind, KeyRule] | None = None,
) -> AuditReport:
    """Check the whole stored ledger; ``witness_keys``: the witnesses whose stored
    cosignatures must verify (others' are counted in ``unchecked``); ``key_rules``: the key
    rule of each entry kind the ledger does not own (e.g. the read side's), whose body the
    owner's rule decodes. An entry of a kind with no rule is counted in ``unkeyed``."""
    report = AuditReport()
    cosignatures = CosignatureCheck(witness_keys)
    cosignatures.load(reader.blocks.cosignature_rows())
    for where, detail in cosignatures.malformed():
        report.add("cosignature", where, detail)
    blocks = _Blocks(_stored_blocks(reader, report), ledger_key, cosignatures, report)
    block = blocks.next()
    while block is not None and block.tree_size == 0:
        _check_root(block, EMPTY_ROOT, report)
        block = blocks.next()
    keys: dict[bytes, _KeyState] = {}
    tree = _Rebuild()
    expected_keys = ExpectedKeys()
    size = _stored_size(reader, report)
    pages = _Pages(reader, size, report)
    for index, data in pages.entries():
        key = _check_entry(index, data, keys, key_rules or {}, report)
        if key is None:
            expected_keys.unknown(index)
        else:
            holder = expected_keys.take(key, index)
            if holder is not None:
                report.add("ledger key", f"entry {index}", f"key {key} is entry {holder}'s already")
        for tile_key, rebuilt in tree.add(hash_leaf(data)):
            _check_tile(reader, tile_key, rebuilt, report)
        report.entries += 1
        while block is not None and block.tree_size == tree.size:
            _check_root(block, tree.root(), report)
            block = blocks.next()
    # What follows compares the whole log; after a page that stopped the rebuild, it would
    # only repeat that finding.
    if pages.complete and size is not None and report.entries != size:
        report.add("entry", f"entry {report.entries}", f"the log says {size} entries are stored")
    for tile_key, rebuilt in tree.tiles.items() if pages.complete else ():  # the unfilled edge
        _check_tile(reader, tile_key, rebuilt, report)
    while block is not None:
        if pages.complete:
            report.add(
                "block",
                f"block {block.height}",
                f"covers {block.tree_size} entries, beyond the log",
            )
        block = blocks.next()
    if pages.complete:
        for where, detail in expected_keys.differences(reader.log.keys.stored_rows()):
            report.add("key index", where, detail)
    for where, detail in cosignatures.orphans():
        report.add("cosignature", where, detail)
    report.cosigned, report.unchecked = cosignatures.verified, cosignatures.unchecked
    return report


def _stored_size(reader: LedgerReader, report: AuditReport) -> int | None:
    try:
        return reader.log.stored_size()
    except StoredRowError as exc:
        report.add("entry", "log size", str(exc))
        return None


def _stored_blocks(reader: LedgerReader, report: AuditReport) -> Iterator[Block]:
    for row in reader.blocks.rows():
        try:
            yield parse_block_row(row)
        except StoredRowError as exc:
            report.add("block", f"block row {row[0]!r}", str(exc))


class _Pages:
    """The stored entry pages in order, each row checked; a page that does not decode, or a
    missing one, ends the entries there (``complete`` is then False)."""

    def __init__(self, reader: LedgerReader, size: int | None, report: AuditReport) -> None:
        self._reader = reader
        self._size = size
        self._report = report
        self.complete = True

    def entries(self) -> Iterator[tuple[int, bytes]]:
        size = self._size
        expected = 0
        for raw_idx, raw_page in self._reader.log.page_rows():
            if size is not None and expected * PAGE_ENTRIES >= size:
                self._report.add(
                    "entry page", f"entry page {raw_idx!r}", "stored beyond the log's size"
                )
                break
            where = f"entry page {expected}"
            try:
                idx = int_column(raw_idx, "idx")
                if idx != expected:
                    raise StoredRowError(f"missing (the next stored page is {idx})")
                page = decode_page(blob_column(raw_page, "entries"))
            except (StoredRowError, PageError) as exc:
                self._stop(where, str(exc))
                return
            base = idx * PAGE_ENTRIES
            if size is not None and len(page) < min(PAGE_ENTRIES, size - base):
                self._stop(where, f"holds {len(page)} entries; the log's size needs more")
                return
            if size is not None and base + len(page) > size:
                self._report.add("entry page", where, "holds entries beyond the log's size")
            for offset, data in enumerate(page):
                if size is None or base + offset < size:
                    yield base + offset, data
            expected += 1
        if size is not None and expected * PAGE_ENTRIES < size:
            self._stop(f"entry page {expected}", "missing")

    def _stop(self, where: str, detail: str) -> None:
        self._report.add("entry page", where, f"{detail}; the entries after it are not checked")
        self.complete = False


class _Blocks:
    """The stored blocks in height order: each one's signature, chain link and cosignatures
    are checked as it is reached."""

    def __init__(
        self,
        blocks: Iterator[Block],
        ledger_key: NoteVerifier,
        cosignatures: CosignatureCheck,
        report: AuditReport,
    ) -> None:
        self._blocks = blocks
        self._ledger_key = ledger_key
        self._cosignatures = cosignatures
        self._report = report
        self._previous: Block | None = None

    def next(self) -> Block | None:
        block = _next_block(self._blocks, self._previous, self._ledger_key, self._report)
        if block is not None:
            for where, detail in self._cosignatures.check(block):
                self._report.add("cosignature", where, detail)
            self._previous = block
        return block


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
    where = f"tile {key[0]}/{key[1]}"
    try:
        stored = reader.log.stored_tile(key)
    except StoredRowError as exc:
        report.add("tile", where, str(exc))
        return
    if stored is None:
        report.add("tile", where, "missing")
        return
    for slot in range(SLOTS):  # a node not complete yet must be stored empty too
        if read_slot(stored, slot) != read_slot(rebuilt, slot):
            level = key[0] * TILE_HEIGHT
            report.add(
                "tile",
                where,
                f"a stored hash (slot {slot}, from tree level {level}) differs from the rebuilt one",
            )
            return


def _check_entry(
    index: int,
    data: bytes,
    keys: dict[bytes, _KeyState],
    key_rules: Mapping[EntryKind, KeyRule],
    report: AuditReport,
) -> EntryKey | None:
    """Check one entry; return the ledger key it is stored under (None: not known)."""
    where = f"entry {index}"
    try:
        entry = LedgerEntry.decode(data)
        if entry.kind is EntryKind.READING:
            return _check_reading(index, entry, keys, report)
        if entry.kind not in (EntryKind.DEVICE_REGISTERED, EntryKind.DEVICE_REVOKED):
            return _other_kind(index, entry, key_rules, report)
        statement = DeviceKeyStatement.from_entry(entry)
        _note_key_statement(index, statement, keys, report)
        event = REGISTERED if statement.kind is EntryKind.DEVICE_REGISTERED else REVOKED
        return key_entry_key(statement.key.kid, event)
    except (EntryError, ReadingError) as exc:
        report.add("entry", where, str(exc))
        return None


def _other_kind(
    index: int, entry: LedgerEntry, key_rules: Mapping[EntryKind, KeyRule], report: AuditReport
) -> EntryKey | None:
    rule = key_rules.get(entry.kind)
    if rule is None:
        report.unkeyed[entry.kind.name.lower()] += 1
        return None
    try:
        return rule(entry)
    except Exception as exc:  # the owner's decoder: its one error type, or a bug - a finding
        report.add("entry", f"entry {index}", f"not a {entry.kind.name.lower()} entry: {exc}")
        return None


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
) -> EntryKey | None:
    where = f"entry {index}"
    message = parse_sign1(entry.body)
    state = keys.get(message.kid)
    verified = False
    if state is None:
        report.add(
            "device key", where, f"signed by key {message.kid.hex()[:16]}, not registered before it"
        )
    else:
        if state.revoked_at is not None:
            report.add("device key", where, f"signed by a key revoked at entry {state.revoked_at}")
        try:
            message.verify(state.statement.key)
            verified = True
        except ReadingError as exc:
            report.add("device signature", where, str(exc))
    try:
        reading = decode_reading(message.payload)
    except ReadingError:
        if state is not None and not verified:
            return None  # a payload the device did not sign: reported as that already
        raise
    if state is not None and verified and reading.device_id != state.statement.device_id:
        report.add(
            "device key",
            where,
            f"a reading of {reading.device_id} under {state.statement.device_id}'s key",
        )
    return reading_key(reading.device_id, reading.seq)
