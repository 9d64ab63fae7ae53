"""Where each interior hash of the tree is stored: tiles of eight levels, 256 leaves wide.

Tile ``(L, N)`` holds every node of tree levels ``8L`` to ``8L + 7`` under its 256 bottom
nodes: 256 + 128 + ... + 2 = 510 hashes in one 16,320-byte blob, an unfilled slot all zero
bytes. A node is read in O(1) from one tile, so an inclusion proof at ten million entries
touches at most a dozen tiles and hashes nothing but its own subtree folds. Storing all
eight levels costs twice the hashes of C2SP tlog-tiles (which keeps only the bottom row
and makes readers rehash up to 255 nodes per tile) and saves that work on every proof;
the bottom row of each tile *is* a tlog-tiles tile, should the log ever serve them.

One row per 256 entries, rewritten while it fills: appends write a few blobs per batch
instead of two rows per leaf.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
SLOTS = 2 * TILE_WIDTH - 2  # levels 0..7 of the tile: 256 + 128 + ... + 2
TILE_BYTES = SLOTS * HASH_SIZE
EMPTY_SLOT = bytes(HASH_SIZE)

TileKey = tuple[int, int]  # (tile level, tile index)


def locate(level: int, index: int) -> tuple[TileKey, int]:
    """The tile holding node ``(level, index)`` and the node's slot in it."""
    tile_level, sub = divmod(level, TILE_HEIGHT)
    width = TILE_WIDTH >> sub
    slot = (2 * TILE_WIDTH - 2 * width) + (index & (width - 1))
    return (tile_level, index >> (TILE_HEIGHT - sub)), slot


def blank_tile() -> bytearray:
    return bytearray(TILE_BYTES)


def read_slot(tile: bytes | bytearray, slot: int) -> bytes | None:
    """The hash in ``slot``, or None if the node is not complete in this tile yet."""
    value = bytes(tile[slot * HASH_SIZE : (slot + 1) * HASH_SIZE])
    return None if value == EMPTY_SLOT else value


def write_slot(tile: bytearray, slot: int, value: bytes) -> None:
    tile[slot * HASH_SIZE : (slot + 1) * HASH_SIZE] = value


def tiles_for(nodes: Iterable[tuple[int, int]]) -> set[TileKey]:
    return {locate(level, index)[0] for level, index in nodes}


def edge_tiles(size: int) -> list[TileKey]:
    """The rightmost tile of each tile level of a tree of ``size`` leaves: where appends write."""
    keys: list[TileKey] = []
    level_size = size
    tile_level = 0
    while True:
        keys.append((tile_level, level_size >> TILE_HEIGHT))
        level_size >>= TILE_HEIGHT
        if level_size == 0:
            return keys
        tile_level += 1
