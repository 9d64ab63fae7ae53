"""The proof bundle: everything needed to check one reading offline, in one JSON document.

::

    {"format": "vitaltrail/proof-bundle@v1",
     "entry": "<base64 leaf data: [kind, logged_at_ms, COSE_Sign1 message]>",
     "device": {"id": "<device id>", "public_key": "<base64 raw Ed25519 key>"},
     "proof": "<C2SP tlog-proof text: index, inclusion proof, signed checkpoint>"}

See docs/proof-bundle.md. Nothing in it needs trust in the server: the verifier checks the
device signature, the inclusion proof and the checkpoint signature against pinned keys.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Self

from ledger.tlog_proof import ProofFormatError, TlogProof

FORMAT = "vitaltrail/proof-bundle@v1"
MAX_BUNDLE_SIZE = 1 << 20


class BundleFormatError(Exception):
    """A document that is not a well-formed proof bundle."""


@dataclass(frozen=True)
class ProofBundle:
    entry: bytes
    device_id: str
    device_public_key: bytes
    proof: TlogProof

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "entry": base64.b64encode(self.entry).decode(),
            "device": {
                "id": self.device_id,
                "public_key": base64.b64encode(self.device_public_key).decode(),
            },
            "proof": self.proof.text(),
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        if len(text) > MAX_BUNDLE_SIZE:
            raise BundleFormatError("bundle is too large")
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleFormatError(f"bundle is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BundleFormatError(f"bundle format must be {FORMAT!r}")
        device = doc.get("device")
        if not isinstance(device, dict) or not isinstance(device.get("id"), str):
            raise BundleFormatError("bundle must name the device and its public key")
        if not isinstance(doc.get("proof"), str):
            raise BundleFormatError("bundle must carry a tlog-proof")
        try:
            proof = TlogProof.parse(doc["proof"])
        except ProofFormatError as exc:
            raise BundleFormatError(f"bundle proof: {exc}") from exc
        return cls(
            entry=_b64(doc.get("entry"), "entry"),
            device_id=device["id"],
            device_public_key=_b64(device.get("public_key"), "device public_key"),
            proof=proof,
        )


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"bundle {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise BundleFormatError(f"bundle {what} is not valid base64") from exc
