"""Entries stored 256 to a row: one page per 256 consecutive leaves.

C2SP tlog-tiles calls these "entry bundles"; here "bundle" already means a proof bundle. A
page is a count, the entries' end offsets, then their data in log order.
One row per 256 entries keeps an append's write cost in the data, not in per-row overhead;
the last page is rewritten while it fills, like the last tile.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import accumulate

PAGE_ENTRIES = 256


class PageError(Exception):
    """A stored page does not parse: the database was damaged or edited."""


def encode_page(entries: Sequence[bytes]) -> bytes:
    """``count`` (u16), each entry's end offset in the data (u32), then the data."""
    ends = list(accumulate(map(len, entries)))
    return struct.pack(f">H{len(ends)}I", len(ends), *ends) + b"".join(entries)


def decode_page(page: bytes) -> list[bytes]:
    if len(page) < 2:
        raise PageError("a page is shorter than its header")
    (count,) = struct.unpack_from(">H", page)
    data_start = 2 + 4 * count
    if count > PAGE_ENTRIES or len(page) < data_start:
        raise PageError("a page's header is damaged")
    ends = struct.unpack_from(f">{count}I", page, 2)
    if list(ends) != sorted(ends) or (ends and data_start + ends[-1] != len(page)):
        raise PageError("a page's offsets do not match its data")
    data = page[data_start:]
    return [data[start:end] for start, end in zip((0, *ends), ends, strict=False)]
