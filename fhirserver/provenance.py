"""The Provenance of an Observation: the proof that travels with the data.

Its target is the Observation, its agent the Device, its entity the device's signed message.
Its signatures carry what ``vitaltrail verify`` needs, so a FHIR client can check the value
offline, years later, with nothing but pinned keys:

1. the device's COSE_Sign1 message, byte for byte as the device sent it and the ledger holds
   it: type ISO-ASTM E1762 *Source Signature* ("the signature of an automated data source ...
   the data from a biomedical monitoring device"), ``sigFormat application/cose``, who the
   Device;
2. once a signed checkpoint covers the entry, the ledger's proof bundle (JSON,
   ``vitaltrail/proof-bundle@v2``): type *Verification Signature* ("a signature verifying the
   information contained in a document": the log's signed checkpoint countersigns the message
   it holds), ``sigFormat application/json``, who the log (its checkpoint origin).

Until then the Provenance has only the first signature and the extension
``urn:vitaltrail:fhir:ledger-proof`` says ``pending``; ``sealed`` when the proof is there.
"""

from __future__ import annotations

import base64
from typing import Any

from access.fhir import LEDGER_INDEX, instant
from devices.cose import parse_sign1
from devices.reading import decode_reading
from fhirserver.directory import reference
from fhirserver.observations import READING_SYSTEM
from ledger.bundle import ProofBundle
from ledger.checkpoint import Checkpoint
from ledger.entries import LedgerEntry
from ledger.note import parse_note

SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
SOURCE_SIGNATURE = {
    "system": SIGNATURE_TYPE,
    "code": "1.2.840.10065.1.12.1.14",
    "display": "Source Signature",
}
VERIFICATION_SIGNATURE = {
    "system": SIGNATURE_TYPE,
    "code": "1.2.840.10065.1.12.1.5",
    "display": "Verification Signature",
}
AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ENTITY_ROLE_SOURCE = "source"
LEDGER_SYSTEM = "urn:vitaltrail:ledger"  # a log, named by its checkpoint origin
LEDGER_PROOF = "urn:vitaltrail:fhir:ledger-proof"  # extension: valueCode sealed | pending
SEALED, PENDING = "sealed", "pending"
COSE = "application/cose"
CBOR = "application/cbor"  # what the device signed: the reading's deterministic CBOR
JSON = "application/json"


def provenance_id(observation_id: str) -> str:
    return "p" + observation_id


def provenance_for(
    observation: dict[str, Any],
    sign1: bytes,
    bundle_json: str | None,
    device_id: str,
    recorded_ms: int,
    *,
    sealed_ms: int | None = None,
) -> dict[str, Any]:
    """The Provenance of ``observation``, whose reading is the COSE_Sign1 ``sign1`` recorded
    at ``recorded_ms``. ``bundle_json`` is its proof bundle, or None while no checkpoint covers
    it; ``sealed_ms`` is when that checkpoint's block was sealed (the proof's signing time; the
    recording time stands in when not given). Raise ``ValueError`` when the parts do not
    belong together: another device's message, or a bundle proving another entry."""
    reading = decode_reading(parse_sign1(sign1).payload)
    if reading.device_id != device_id:
        raise ValueError(f"the message is {reading.device_id}'s, not {device_id}'s")
    device = reference("Device", device_id)
    signatures = [
        {
            "type": [SOURCE_SIGNATURE],
            "when": instant(max(s.time_ms for s in reading.samples)),
            "who": device,
            "targetFormat": CBOR,
            "sigFormat": COSE,
            "data": base64.b64encode(sign1).decode(),
        }
    ]
    if bundle_json is not None:
        signatures.append(
            {
                "type": [VERIFICATION_SIGNATURE],
                "when": instant(recorded_ms if sealed_ms is None else sealed_ms),
                "who": _log_of(bundle_json, sign1),
                "targetFormat": COSE,
                "sigFormat": JSON,
                "data": base64.b64encode(bundle_json.encode()).decode(),
            }
        )
    extensions = [
        {"url": LEDGER_PROOF, "valueCode": PENDING if bundle_json is None else SEALED},
        *(e for e in observation.get("extension", []) if e.get("url") == LEDGER_INDEX),
    ]
    return {
        "resourceType": "Provenance",
        "id": provenance_id(observation["id"]),
        "extension": extensions,
        "target": [{"reference": f"Observation/{observation['id']}"}],
        "recorded": instant(recorded_ms),
        "agent": [
            {
                "type": {"coding": [{"system": AGENT_TYPE, "code": "author", "display": "Author"}]},
                "who": device,
            }
        ],
        "entity": [
            {
                "role": ENTITY_ROLE_SOURCE,
                "what": {
                    "identifier": {
                        "system": READING_SYSTEM,
                        "value": f"{reading.device_id}/{reading.seq}",
                    },
                    "display": "the device's signed message (COSE_Sign1)",
                },
            }
        ],
        "signature": signatures,
    }


def _log_of(bundle_json: str, sign1: bytes) -> dict[str, Any]:
    """Who signed the bundle's checkpoint: the log its origin names. The bundle must prove
    this very message."""
    bundle = ProofBundle.from_json(bundle_json)
    if LedgerEntry.decode(bundle.reading.entry).body != sign1:
        raise ValueError("the proof bundle proves another message")
    origin = Checkpoint.parse(parse_note(bundle.reading.proof.checkpoint_note).text).origin
    return {"identifier": {"system": LEDGER_SYSTEM, "value": origin}, "display": origin}
