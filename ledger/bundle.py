"""The proof bundle: everything needed to check one reading offline, years later, in one JSON document.

::

    {"format": "vitaltrail/proof-bundle@v2",
     "reading":          {"entry": "<base64 leaf data>", "proof": "<C2SP tlog-proof>"},
     "key_registration": {"entry": "<base64 leaf data>", "proof": "<C2SP tlog-proof>"},
     "key_revocation":   null}

Each ``entry`` is a leaf exactly as hashed into the tree (``[kind, logged_at_ms, body]``);
each ``proof`` is a C2SP tlog-proof (index, inclusion proof, and the checkpoint with the
log's signature and the witnesses' cosignatures), all against one checkpoint. The device's
key is not a field of its own: it is in the registration entry, whose inclusion the bundle
proves. ``key_revocation`` is present when the key was revoked within that checkpoint. See
docs/formats.md. Nothing in it needs trust in the server.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Self

from devices.boundary import decoder
from ledger.tlog_proof import ProofFormatError, TlogProof

FORMAT = "vitaltrail/proof-bundle@v2"
MAX_BUNDLE_SIZE = 1 << 20
MAX_CONTAINERS = 16  # a bundle is 4 objects; far more (or deep nesting) is not a bundle


class BundleFormatError(Exception):
    """A document that is not a well-formed proof bundle."""


@dataclass(frozen=True)
class ProvenEntry:
    entry: bytes  # the leaf data
    proof: TlogProof

    def to_dict(self) -> dict[str, str]:
        return {"entry": base64.b64encode(self.entry).decode(), "proof": self.proof.text()}

    @classmethod
    def from_dict(cls, doc: Any, what: str) -> Self:
        if not isinstance(doc, dict) or not isinstance(doc.get("proof"), str):
            raise BundleFormatError(f"bundle {what} must hold an entry and a tlog-proof")
        try:
            proof = TlogProof.parse(doc["proof"])
        except ProofFormatError as exc:
            raise BundleFormatError(f"bundle {what} proof: {exc}") from exc
        return cls(_b64(doc.get("entry"), f"{what} entry"), proof)


@dataclass(frozen=True)
class ProofBundle:
    reading: ProvenEntry
    key_registration: ProvenEntry
    key_revocation: ProvenEntry | None = None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "reading": self.reading.to_dict(),
            "key_registration": self.key_registration.to_dict(),
            "key_revocation": self.key_revocation.to_dict() if self.key_revocation else None,
        }

    @classmethod
    @decoder(BundleFormatError, "the proof bundle")
    def from_json(cls, text: str | bytes) -> Self:
        """Parse a bundle document; raise :class:`BundleFormatError` for anything else."""
        if len(text) > MAX_BUNDLE_SIZE:
            raise BundleFormatError("bundle is too large")
        if _containers(text) > MAX_CONTAINERS:
            raise BundleFormatError(f"a bundle holds at most {MAX_CONTAINERS} objects and arrays")
        try:
            doc = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
            raise BundleFormatError(f"bundle is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise BundleFormatError(f"bundle format must be {FORMAT!r}, not {found!r}")
        revocation = doc.get("key_revocation")
        return cls(
            ProvenEntry.from_dict(doc.get("reading"), "reading"),
            ProvenEntry.from_dict(doc.get("key_registration"), "key_registration"),
            None if revocation is None else ProvenEntry.from_dict(revocation, "key_revocation"),
        )

    @property
    def proven(self) -> list[tuple[str, ProvenEntry]]:
        named = [("reading", self.reading), ("key registration", self.key_registration)]
        if self.key_revocation is not None:
            named.append(("key revocation", self.key_revocation))
        return named


def _containers(text: str | bytes) -> int:
    """How many JSON objects and arrays the text opens outside strings, counted without
    parsing: it bounds the nesting, which json.loads would meet the recursion limit for."""
    data = text.encode(errors="replace") if isinstance(text, str) else text
    outside = _STRING.sub(b"", data)
    return outside.count(b"{") + outside.count(b"[")


# A JSON string, or an unterminated one up to the end: linear on any input.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"bundle {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise BundleFormatError(f"bundle {what} is not valid base64") from exc
