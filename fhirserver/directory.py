"""Patient and Device resources from the registry, and references to them.

vitaltrail knows a patient only by id (no demographics: those live in the hospital's systems),
so a Patient is its id and identifier. A Device is the registry's record: its key's
thumbprint as identifiers - the RFC 9679 COSE Key Thumbprint the device's messages name as
their kid, as its thumbprint URI (RFC 9679 section 5.7) and in the hex the ledger keys it by
(``device-key/<kid hex>``, ledger/device_keys.py) - its patient, and ``inactive`` once revoked.

A vitaltrail id may hold ``_``, which a FHIR id may not (``[A-Za-z0-9.-]{1,64}``). Such a
patient or device has no FHIR resource of its own: references to it carry its identifier
instead of a literal reference, and building its resource raises :class:`NotAFhirId`.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Literal

from access.fhir import instant
from devices.registry import DeviceRecord

PATIENT_SYSTEM = "urn:vitaltrail:patient"
DEVICE_SYSTEM = "urn:vitaltrail:device"
DEVICE_KID_SYSTEM = "urn:vitaltrail:device-kid"  # the kid in hex, as the ledger keys it
URI_SYSTEM = "urn:ietf:rfc:3986"  # FHIR's system for an identifier that is itself a URI
THUMBPRINT_URI = "urn:ietf:params:oauth:ckt:sha-256:"  # RFC 9679 section 5.7
KEY_REVOKED = "urn:vitaltrail:fhir:device-key-revoked"  # extension: valueInstant

_FHIR_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")
_SYSTEMS = {"Patient": PATIENT_SYSTEM, "Device": DEVICE_SYSTEM}


class NotAFhirId(ValueError):
    """A vitaltrail id that cannot be a FHIR resource id."""


def is_fhir_id(text: str) -> bool:
    return _FHIR_ID.fullmatch(text) is not None


def reference(resource_type: Literal["Patient", "Device"], local_id: str) -> dict[str, Any]:
    """A Reference to a patient or device: literal when its id is a FHIR id, else by identifier."""
    if is_fhir_id(local_id):
        return {"reference": f"{resource_type}/{local_id}"}
    return {
        "type": resource_type,
        "identifier": {"system": _SYSTEMS[resource_type], "value": local_id},
    }


def thumbprint_uri(kid: bytes) -> str:
    """The RFC 9679 thumbprint URI of a device key whose thumbprint (COSE kid) is ``kid``."""
    return THUMBPRINT_URI + base64.urlsafe_b64encode(kid).decode().rstrip("=")


def patient_resource(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": _fhir_id(patient_id, "patient"),
        "identifier": [{"system": PATIENT_SYSTEM, "value": patient_id}],
    }


def device_resource(device: DeviceRecord) -> dict[str, Any]:
    kid = device.key.kid
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": _fhir_id(device.device_id, "device"),
        "identifier": [
            {"system": DEVICE_SYSTEM, "value": device.device_id},
            {"system": URI_SYSTEM, "value": thumbprint_uri(kid)},
            {"system": DEVICE_KID_SYSTEM, "value": kid.hex()},
        ],
        "status": "inactive" if device.revoked else "active",
        "patient": reference("Patient", device.patient_id),
    }
    if device.revoked_at_ms is not None:
        resource["extension"] = [
            {"url": KEY_REVOKED, "valueInstant": instant(device.revoked_at_ms)}
        ]
    return resource


def _fhir_id(local_id: str, what: str) -> str:
    if not is_fhir_id(local_id):
        raise NotAFhirId(f"{what} id {local_id!r} is not a FHIR id: it is referenced by identifier")
    return local_id
