"""Consent statements: a patient's grant to an app or a user, and its withdrawal.

Shaped after FHIR R4 Consent (scope patient-privacy, one permit provision). A statement is
deterministic CBOR with text keys; a grant::

    {"patient": "p-17", "seq": 0, "status": "active", "time": 1763700000000,
     "grantee": ["app", "telemed-1"], "actions": ["access"], "data": ["vital-signs"],
     "purpose": ["PATRQT", "TREAT"], "start": 1763700000000, "end": 1766300000000}

``grantee`` is ``["app", <OAuth client id>]`` or ``["user", <user id>]``; ``actions`` are
FHIR consentaction codes; ``data`` holds the vital-signs category or LOINC codes; ``purpose``
holds HL7 v3 PurposeOfUse codes; ``end`` may be left out (no end). Sets are sorted arrays of
distinct items, so a statement has one encoding. A withdrawal ends an earlier grant of the
same patient, named by its ``seq``::

    {"patient": "p-17", "seq": 1, "status": "inactive", "time": 1763790000000, "ends": 0}

Each patient numbers their statements; the ledger key is ``("consent/<patient>", seq)``, so a
redelivery is a duplicate and a second statement under a taken number a conflict.

Two ledger kinds carry a statement. CONSENT_SIGNED (6): the body is the patient's canonical
COSE_Sign1 (devices.cose) over the statement, its kid the patient key's thumbprint
(access.patient_keys). CONSENT_RECORDED (7): staff recorded it on the patient's behalf::

    {"statement": h'<statement bytes>', "by": "u-nurse-3", "role": "clinician",
     "reason": "patient asked by phone"}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from access.errors import ConsentError
from access.fields import (
    dump_map,
    is_code,
    is_patient_id,
    is_principal,
    is_purpose,
    is_sorted_set,
    is_text,
    is_time,
    is_uint,
    load_map,
    sorted_set,
)
from devices.boundary import decoder
from devices.cose import parse_sign1, sign1
from devices.errors import CoseError, SignatureError
from devices.keys import DeviceKey, DeviceSigner
from devices.reading import LOINC_PATTERN, MAX_SEQ
from ledger.appends import EntryKey
from ledger.entries import EntryKind

GRANT, WITHDRAWAL = "active", "inactive"  # FHIR consent-state-codes
ACTIONS = frozenset({"access", "collect", "use", "disclose", "correct"})  # FHIR consentaction
VITAL_SIGNS = "vital-signs"  # the observation-category code: every vital sign
GRANTEE_KINDS = frozenset({"app", "user"})
KINDS = (EntryKind.CONSENT_SIGNED, EntryKind.CONSENT_RECORDED)

_COMMON = frozenset({"patient", "seq", "status", "time"})
_GRANT = _COMMON | {"grantee", "actions", "data", "purpose", "start"}
_WITHDRAWAL = _COMMON | {"ends"}
_RECORDED = frozenset({"statement", "by", "role", "reason"})


def consent_key(patient_id: str, seq: int) -> EntryKey:
    return EntryKey(f"consent/{patient_id}", seq)


def is_data_class(value: object) -> bool:
    return value == VITAL_SIGNS or (
        isinstance(value, str) and LOINC_PATTERN.fullmatch(value) is not None
    )


@dataclass(frozen=True)
class Grantee:
    kind: str  # "app": an OAuth client id; "user": a user id (the token's sub)
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class ConsentStatement:
    """A grant (status active) or a withdrawal (status inactive, ``ends`` a grant's seq)."""

    patient_id: str
    seq: int
    status: str
    time_ms: int
    grantee: Grantee | None = None
    actions: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    purpose: tuple[str, ...] = ()
    start_ms: int | None = None
    end_ms: int | None = None
    ends: int | None = None

    @classmethod
    def grant(
        cls,
        patient_id: str,
        seq: int,
        time_ms: int,
        grantee: Grantee,
        *,
        data: tuple[str, ...] | list[str],
        purpose: tuple[str, ...] | list[str],
        start_ms: int,
        end_ms: int | None = None,
        actions: tuple[str, ...] | list[str] = ("access",),
    ) -> Self:
        statement = cls(
            patient_id, seq, GRANT, time_ms, grantee, sorted_set(actions), sorted_set(data),
            sorted_set(purpose), start_ms, end_ms,
        )  # fmt: skip
        statement.encode()  # validates
        return statement

    @classmethod
    def withdrawal(cls, patient_id: str, seq: int, time_ms: int, ends: int) -> Self:
        statement = cls(patient_id, seq, WITHDRAWAL, time_ms, ends=ends)
        statement.encode()
        return statement

    @property
    def is_grant(self) -> bool:
        return self.status == GRANT

    @property
    def ledger_key(self) -> EntryKey:
        return consent_key(self.patient_id, self.seq)

    def encode(self) -> bytes:
        """The deterministic CBOR of the statement; :class:`ConsentError` if it is not valid."""
        doc: dict[str, object] = {
            "patient": self.patient_id, "seq": self.seq, "status": self.status,
            "time": self.time_ms,
        }  # fmt: skip
        if self.is_grant:
            doc |= {
                "grantee": [self.grantee.kind, self.grantee.id] if self.grantee else None,
                "actions": list(self.actions), "data": list(self.data),
                "purpose": list(self.purpose), "start": self.start_ms, "end": self.end_ms,
            }  # fmt: skip
        else:
            doc["ends"] = self.ends
        reason = _invalid(doc)
        if reason is not None:
            raise ConsentError(reason)
        return dump_map(doc)

    @classmethod
    @decoder(ConsentError, "the consent statement")
    def decode(cls, data: bytes) -> Self:
        """Parse statement bytes; :class:`ConsentError` unless they are exactly a valid one."""
        doc = load_map(data, _COMMON, (_GRANT | _WITHDRAWAL | {"end"}) - _COMMON)
        if isinstance(doc, str):
            raise ConsentError(f"a consent statement is {doc}")
        reason = _invalid(doc)
        if reason is not None:
            raise ConsentError(reason)
        if doc["status"] == GRANT:
            kind, grantee_id = doc["grantee"]
            statement = cls(
                doc["patient"], doc["seq"], GRANT, doc["time"], Grantee(kind, grantee_id),
                tuple(doc["actions"]), tuple(doc["data"]), tuple(doc["purpose"]),
                doc["start"], doc.get("end"),
            )  # fmt: skip
        else:
            statement = cls(doc["patient"], doc["seq"], WITHDRAWAL, doc["time"], ends=doc["ends"])
        if statement.encode() != data:
            raise ConsentError("consent statement is not deterministically encoded")
        return statement


def _invalid(doc: Mapping[str, Any]) -> str | None:
    """Why a decoded statement map is not a valid statement, or None."""
    present = {k for k, v in doc.items() if v is not None}
    if not is_patient_id(doc.get("patient")):
        return "a consent statement names no valid patient"
    if not is_uint(doc.get("seq"), MAX_SEQ):
        return f"a consent's seq is an integer from 0 to {MAX_SEQ}"
    if not is_time(doc.get("time")):
        return "a consent's time is milliseconds since the Unix epoch"
    status = doc.get("status")
    if status == WITHDRAWAL:
        if present != _WITHDRAWAL:
            return f"a withdrawal is a map of {sorted(_WITHDRAWAL)}"
        if not is_uint(doc["ends"], MAX_SEQ) or not doc["ends"] < doc["seq"]:
            return "a withdrawal ends an earlier grant of the patient, by its seq"
        return None
    if status != GRANT:
        return f"a consent's status is {GRANT!r} (a grant) or {WITHDRAWAL!r} (a withdrawal)"
    if not present >= _GRANT or present - _GRANT - {"end"}:
        return f"a grant is a map of {sorted(_GRANT)} and optionally 'end'"
    grantee = doc["grantee"]
    if not (
        isinstance(grantee, list)
        and len(grantee) == 2
        and isinstance(grantee[0], str)
        and grantee[0] in GRANTEE_KINDS
        and is_principal(grantee[1])
    ):
        return "a grant's grantee is ['app', client id] or ['user', user id]"
    if not is_sorted_set(doc["actions"], lambda a: isinstance(a, str) and a in ACTIONS):
        return f"a grant's actions are a sorted set of {sorted(ACTIONS)}"
    if not is_sorted_set(doc["data"], is_data_class):
        return f"a grant's data is a sorted set of {VITAL_SIGNS!r} and LOINC codes"
    if not is_sorted_set(doc["purpose"], is_purpose):
        return "a grant's purpose is a sorted set of PurposeOfUse codes like TREAT"
    start, end = doc["start"], doc.get("end")
    if not is_time(start) or (end is not None and not is_time(end)):
        return "a grant's period is milliseconds since the Unix epoch"
    if end is not None and not start < end:
        return "a grant's period ends after it starts"
    return None


@dataclass(frozen=True)
class SignedConsent:
    """A statement the patient signed (kind CONSENT_SIGNED): the COSE_Sign1 is the body."""

    message: bytes
    kid: bytes
    statement: ConsentStatement

    @classmethod
    @decoder(ConsentError, "the signed consent")
    def decode(cls, body: bytes) -> Self:
        try:
            signed = parse_sign1(body)
        except CoseError as exc:
            raise ConsentError(f"a signed consent is a COSE_Sign1 message: {exc}") from exc
        return cls(bytes(body), signed.kid, ConsentStatement.decode(signed.payload))

    def verify(self, key: DeviceKey) -> None:
        """Raise :class:`ConsentError` unless ``key`` signed this statement."""
        try:
            parse_sign1(self.message).verify(key)
        except (CoseError, SignatureError) as exc:
            raise ConsentError(f"the patient's signature does not verify: {exc}") from exc

    @property
    def kind(self) -> EntryKind:
        return EntryKind.CONSENT_SIGNED

    @property
    def body(self) -> bytes:
        return self.message


def sign_consent(signer: DeviceSigner, statement: ConsentStatement) -> SignedConsent:
    """What the patient's app does: sign the statement with the patient's key."""
    message = sign1(signer, statement.encode())
    return SignedConsent(message, signer.key.kid, statement)


@dataclass(frozen=True)
class RecordedConsent:
    """A statement staff recorded on the patient's behalf (kind CONSENT_RECORDED)."""

    statement: ConsentStatement
    recorder: str  # the user id of who recorded it
    role: str  # their role when they did
    reason: str  # why the patient did not sign it themselves

    @property
    def kind(self) -> EntryKind:
        return EntryKind.CONSENT_RECORDED

    @property
    def body(self) -> bytes:
        if not (is_principal(self.recorder) and is_code(self.role) and is_text(self.reason)):
            raise ConsentError("a recorded consent names its recorder, their role and a reason")
        return dump_map(
            {
                "statement": self.statement.encode(),
                "by": self.recorder,
                "role": self.role,
                "reason": self.reason,
            }
        )

    @classmethod
    @decoder(ConsentError, "the recorded consent")
    def decode(cls, body: bytes) -> Self:
        doc = load_map(body, _RECORDED, frozenset())
        if isinstance(doc, str):
            raise ConsentError(f"a recorded consent is {doc}")
        if not isinstance(doc["statement"], bytes):
            raise ConsentError("a recorded consent holds the statement's bytes")
        recorded = cls(
            ConsentStatement.decode(doc["statement"]), doc["by"], doc["role"], doc["reason"]
        )
        if recorded.body != body:
            raise ConsentError("recorded consent is not deterministically encoded")
        return recorded


Consent = SignedConsent | RecordedConsent


@decoder(ConsentError, "the consent entry")
def decode_consent(kind: EntryKind, body: bytes) -> Consent:
    """The consent a ledger entry (or journal row) of ``kind`` holds."""
    if kind is EntryKind.CONSENT_SIGNED:
        return SignedConsent.decode(body)
    if kind is EntryKind.CONSENT_RECORDED:
        return RecordedConsent.decode(body)
    raise ConsentError(f"a {kind.name.lower()} entry is not a consent")
