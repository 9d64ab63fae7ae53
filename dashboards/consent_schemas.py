"""The JSON of the consent routes: what a patient's page and staff send, and what they get back.

Response models are split from the stored formats (access.consent): a statement is shown with
its journal position, who signed or recorded it, and - for a grant - its state now, so a page
needs no rules of its own to say whether a grant is in force.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from access.consent import Consent, ConsentStatement, Grantee, RecordedConsent, SignedConsent
from access.consent_state import ConsentState
from access.errors import ConsentError
from access.journal import Row
from devices.keys import PUBLIC_KEY_SIZE, DeviceKey
from devices.reading import MAX_SEQ, MAX_TIME_MS

T = TypeVar("T")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# The highest seq staff may send: exact in every JSON client (I-JSON, RFC 7493 §2.2) and in the
# OpenAPI document, whose bounds FastAPI writes as doubles (MAX_SEQ, 2^63 - 1, would read 2^63).
MAX_JSON_SEQ = min(MAX_SEQ, 2**53 - 1)
MAX_MESSAGE_CHARS = 90_000  # base64url of devices.cose.MAX_MESSAGE_SIZE (64 KiB) and a margin

GrantState = Literal["in-force", "withdrawn", "expired", "scheduled", "withdrawal"]


class BadKey(ValueError):
    """A public key in a shape the key route does not take."""


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url in its one canonical spelling; ValueError otherwise."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if b64url(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeyIn(BaseModel):
    """An Ed25519 public key: ``key`` (the raw 32 bytes, base64url) or ``jwk`` (OKP, Ed25519,
    RFC 8037) - exactly one."""

    key: str | None = Field(default=None, max_length=64)
    jwk: dict[str, Any] | None = None

    def public_key(self) -> DeviceKey:
        if (self.key is None) == (self.jwk is None):
            raise BadKey("send the public key as 'key' or as 'jwk', exactly one")
        if self.jwk is not None:
            if "d" in self.jwk:
                raise BadKey("that JWK holds a private key: send the public half only")
            if self.jwk.get("kty") != "OKP" or self.jwk.get("crv") != "Ed25519":
                raise BadKey("a patient key is an Ed25519 key (kty OKP, crv Ed25519)")
            x = self.jwk.get("x")
        else:
            x = self.key
        try:
            raw = b64url_decode(x) if isinstance(x, str) else b""
        except ValueError as exc:
            raise BadKey(f"the public key is {exc}") from exc
        if len(raw) != PUBLIC_KEY_SIZE:
            raise BadKey(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        return DeviceKey(raw)


class KeyOut(BaseModel):
    kid: str = Field(description="hex of the key's RFC 9679 thumbprint, the COSE kid")
    active: bool


class KeyRegistered(BaseModel):
    kid: str
    registered: bool = Field(description="false: this key was already the patient's key")
    revoked: list[str] = Field(description="kids of the patient's earlier keys, now revoked")


class SignedIn(BaseModel):
    """The patient's canonical COSE_Sign1 over a consent statement, base64url."""

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class GranteeBody(BaseModel):
    kind: Literal["app", "user"]
    id: str = Field(min_length=1, max_length=255)


class StatementIn(BaseModel):
    """A statement staff record for a patient. ``seq`` left out: the patient's next number.
    A grant (``active``) names grantee, data, purpose and start; a withdrawal (``inactive``)
    names the grant it ends."""

    status: Literal["active", "inactive"]
    seq: int | None = Field(default=None, ge=0, le=MAX_JSON_SEQ)
    grantee: GranteeBody | None = None
    actions: list[str] = Field(default=["access"], max_length=16)
    data: list[str] = Field(default=[], max_length=64)
    purpose: list[str] = Field(default=[], max_length=64)
    start_ms: int | None = Field(default=None, ge=0, le=MAX_TIME_MS)
    end_ms: int | None = Field(default=None, ge=0, le=MAX_TIME_MS)
    ends: int | None = Field(default=None, ge=0, le=MAX_JSON_SEQ)

    def statement(self, patient_id: str, seq: int, now_ms: int) -> ConsentStatement:
        """The statement, dated now; ConsentError (access.errors) if it is not a valid one."""
        if self.status == "inactive":
            return ConsentStatement.withdrawal(patient_id, seq, now_ms, _need(self.ends, "ends"))
        grantee = _need(self.grantee, "grantee")
        return ConsentStatement.grant(
            patient_id, seq, now_ms, Grantee(grantee.kind, grantee.id),
            data=self.data, purpose=self.purpose, actions=self.actions,
            start_ms=_need(self.start_ms, "start_ms"), end_ms=self.end_ms,
        )  # fmt: skip


def _need(value: T | None, name: str) -> T:
    if value is None:
        raise ConsentError(f"the statement needs {name!r}")
    return value


class RecordIn(BaseModel):
    """Staff recording a statement on a patient's behalf, and why the patient did not sign."""

    reason: str = Field(min_length=1, max_length=1024)
    statement: StatementIn


class RecorderOut(BaseModel):
    by: str
    role: str
    reason: str


class StatementOut(BaseModel):
    seq: int
    status: Literal["active", "inactive"]
    kind: Literal["signed", "recorded"]
    time_ms: int
    journal_seq: int
    recorded_at_ms: int
    grantee: GranteeBody | None = None
    actions: list[str] = []
    data: list[str] = []
    purpose: list[str] = []
    start_ms: int | None = None
    end_ms: int | None = None
    ends: int | None = None
    state: GrantState
    withdrawn_by: int | None = Field(default=None, description="the seq of its withdrawal")
    kid: str | None = Field(default=None, description="the signing key (a signed statement)")
    recorded_by: RecorderOut | None = None


class ConsentsOut(BaseModel):
    patient: str
    next_seq: int = Field(description="the number the patient's next statement takes")
    keys: list[KeyOut]
    statements: list[StatementOut]


class AppOut(BaseModel):
    client_id: str
    name: str | None = None


def statement_out(row: Row, consent: Consent, state: ConsentState, now_ms: int) -> StatementOut:
    s = consent.statement
    withdrawal = state.withdrawal_of(s.patient_id, s.seq) if s.is_grant else None
    out = StatementOut(
        seq=s.seq,
        status="active" if s.is_grant else "inactive",
        kind="signed" if isinstance(consent, SignedConsent) else "recorded",
        time_ms=s.time_ms,
        journal_seq=row.seq,
        recorded_at_ms=row.recorded_at_ms,
        grantee=GranteeBody(kind=s.grantee.kind, id=s.grantee.id) if s.grantee else None,  # type: ignore[arg-type]
        actions=list(s.actions),
        data=list(s.data),
        purpose=list(s.purpose),
        start_ms=s.start_ms,
        end_ms=s.end_ms,
        ends=s.ends,
        state=grant_state(s, withdrawal is not None, now_ms),
        withdrawn_by=withdrawal.statement.seq if withdrawal is not None else None,
    )
    if isinstance(consent, SignedConsent):
        out.kid = consent.kid.hex()
    elif isinstance(consent, RecordedConsent):
        out.recorded_by = RecorderOut(by=consent.recorder, role=consent.role, reason=consent.reason)
    return out


def grant_state(s: ConsentStatement, withdrawn: bool, now_ms: int) -> GrantState:
    """A grant's state now, by the rules of access.consent_state (period: start <= t < end)."""
    if not s.is_grant:
        return "withdrawal"
    if withdrawn:
        return "withdrawn"
    if s.end_ms is not None and now_ms >= s.end_ms:
        return "expired"
    if s.start_ms is not None and now_ms < s.start_ms:
        return "scheduled"
    return "in-force"
