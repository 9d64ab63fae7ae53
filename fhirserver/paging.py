"""Paging a search: opaque cursors that hold their place while readings arrive, and Bundles.

A search's first page fixes the log size it sees (``as_of``: the index caught up to it); every
later page reads the same rows - entries below ``as_of`` - after the last one the page before
returned, in sort order ``(time, entry index, code, repeat)``: a keyset. Readings that arrive during
the walk are in none of its pages (a new search sees them), so pages neither shift nor repeat,
and the walk ends. The ``next`` link is the query as applied plus ``_cursor``:

    base64url( 0x01 | as_of u64 | time_ms u64 | entry_index u64 | repeat u8 | len u8
               | code | query binding (16 bytes) | HMAC-SHA256 (first 16 bytes) )

The binding is a digest of what the results depend on (``Query.binding``, and which
interaction): a cursor taken from one search and sent with another patient's, code or dates
is refused, and the HMAC (its key kept with the index, ``ObservationIndex.cursor_key``) makes
every byte the server's. Neither is what protects the data: each page is decided by the
access policy again, like any request. A cursor is outside bytes: :meth:`Cursor.decode` lets
out :class:`CursorError` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from devices.boundary import decoder
from fhirserver.index import Key
from fhirserver.search import CURSOR, Query, query_string

VERSION = 1
_HEAD = struct.Struct(">BQQQBB")
BINDING_BYTES = MAC_BYTES = 16
MAX_U64 = 2**64 - 1
_CODE = re.compile(r"[0-9]{1,7}-[0-9]")
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,256}")


class CursorError(Exception):
    """A ``_cursor`` this server did not issue for this search (400)."""


def binding(interaction: str, query: Query) -> bytes:
    """The digest a cursor of ``query`` on ``interaction`` carries."""
    text = f"{interaction}\n{query.binding()}".encode()
    return hashlib.sha256(text).digest()[:BINDING_BYTES]


@dataclass(frozen=True)
class Cursor:
    as_of: int  # the log size the first page saw
    after: Key  # the sort key of the last row returned
    bound: bytes  # binding() of the search it continues

    def encode(self, key: bytes) -> str:
        time_ms, entry_index, code, repeat = self.after
        code_bytes = code.encode("ascii")
        body = (
            _HEAD.pack(VERSION, self.as_of, time_ms, entry_index, repeat, len(code_bytes))
            + code_bytes
            + self.bound
        )
        mac = hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")

    @classmethod
    @decoder(CursorError, "the paging cursor")
    def decode(cls, text: str, key: bytes, bound: bytes) -> Self:
        """The cursor ``text`` encodes, if this server issued it for the search ``bound``."""
        if _B64URL.fullmatch(text) is None:
            raise CursorError("a cursor is base64url text")
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("a cursor is base64url text") from None
        if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
            raise CursorError("a cursor is base64url text, canonically encoded")
        if len(data) < _HEAD.size + BINDING_BYTES + MAC_BYTES:
            raise CursorError("the cursor is too short")
        body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
        expected = hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise CursorError("the cursor is not one this server issued")
        version, as_of, time_ms, entry_index, repeat, length = _HEAD.unpack_from(body)
        code_bytes = body[_HEAD.size : _HEAD.size + length]
        their_binding = body[_HEAD.size + length :]
        if version != VERSION or len(code_bytes) != length or len(their_binding) != BINDING_BYTES:
            raise CursorError("the cursor is not one this server issued")
        code = code_bytes.decode("ascii")
        if _CODE.fullmatch(code) is None:
            raise CursorError("the cursor is not one this server issued")
        if not hmac.compare_digest(their_binding, bound):
            raise CursorError("the cursor belongs to another search: start it again")
        return cls(as_of, (time_ms, entry_index, code, repeat), bound)


@dataclass(frozen=True)
class Page:
    """One page of a search: what to show, and where the next one starts (None: the end)."""

    resources: Sequence[tuple[dict[str, Any], str]]  # (resource, search mode: match/include)
    next: Cursor | None = None
    total: int | None = None


def searchset(
    base: str, path: str, query: Query, page: Page, key: bytes, cursor: str | None = None
) -> dict[str, Any]:
    """The searchset Bundle of a page: ``self`` is the query as applied (and the cursor it
    was asked with), ``next`` the same query with the next page's cursor."""
    links = [{"relation": "self", "url": _url(base, path, query.used, cursor)}]
    if page.next is not None:
        links.append(
            {"relation": "next", "url": _url(base, path, query.used, page.next.encode(key))}
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    bundle["entry"] = [
        {
            "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": mode},
        }
        for resource, mode in page.resources
    ]
    return bundle


def _url(base: str, path: str, used: Iterable[tuple[str, str]], cursor: str | None) -> str:
    items = list(used) + ([(CURSOR, cursor)] if cursor is not None else [])
    query = query_string(items)
    return f"{base}{path}" + (f"?{query}" if query else "")
