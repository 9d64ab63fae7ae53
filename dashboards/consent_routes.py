"""Consent, the patient's way: keys, grants and withdrawals they sign, and staff on their behalf.

:func:`consent_router` takes the dependency that yields the verified caller (an
``access.tokens.Principal``: a bearer token's, or the signed-in session's) and returns the
routes below. What they need from the data directory is one attribute of the app's state:

``app.state.consent_services``  a :class:`ConsentServices`: the ``ConsentStore`` over the
                                access journal (``settings.access_journal_path``; its
                                ``keys`` are the patient-keys registry), the ``AppStore``
                                (``settings.access_db_path``), the ``AccessTrail`` over the
                                same journal, and the refusal counters.

Routes, each with the rule it checks (roles and SMART scopes, :data:`RULES`):

``GET  /me``                               public: the patient's page (it holds no data)
``GET  /api/v1/me/apps``                   patient, ``patient/Consent.r``: apps one may grant
``POST /api/v1/me/keys``                   patient, ``patient/Consent.c``: register the key
                                           the patient signs with; one active key per
                                           patient, so a new key revokes the earlier ones
                                           (registered first, then the others revoked)
``GET  /api/v1/me/consents``               patient, ``patient/Consent.r``: statements, each
                                           grant's state now; ``?format=fhir``: a Bundle of
                                           FHIR Consent. Recorded in the access trail.
``POST /api/v1/me/consents``               patient, ``patient/Consent.c``: the patient's own
                                           COSE_Sign1 over a statement; never signed here
``POST /api/v1/patients/{id}/consents``    staff, ``user/Consent.c``: recorded on the patient's
                                           behalf, naming who and why

Staff are the roles the auditor accepts as recorders (``access.compliance.STAFF_ROLES``:
clinicians and admins; an admin enters a paper consent form but reads no vitals here, the
answer holds only the statement just recorded). A refusal decided here is JSON ``{"detail",
"reason"}``: 403 for a role, scope or another patient's statement (with ``WWW-Authenticate``
for a missing scope), 400 for what cannot be a statement or key, 409 for a statement the
patient's record already rules out, 503 when the journal cannot commit. The app's token check
runs first: its 401 (with ``WWW-Authenticate``), like FastAPI's 400 for a body it cannot
parse, is ``{"detail"}`` alone (``dashboards.refusals`` documents both).
Journal commits block (SQLite, fsync), so the handlers are plain functions: FastAPI runs them
on its bounded thread pool, never on the event loop.
"""

# No ``from __future__ import annotations``: the routes' dependency types are local to
# consent_router, and FastAPI reads annotations at runtime in the module's globals.
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from access.apps import AppStore
from access.compliance import STAFF_ROLES
from access.consent import SignedConsent
from access.consent_store import ConsentStore
from access.errors import ConsentError, ConsentRefused, JournalError, Refusals, TokenError
from access.fhir import consent_resources
from access.fields import is_principal
from access.journal import Row
from access.patient_keys import PatientKeyStatement
from access.scopes import Context, Interaction
from access.tokens import Principal
from access.trail import PERMIT, READ, Access, AccessTrail, Agent
from dashboards.consent_schemas import (
    AppOut,
    BadKey,
    ConsentsOut,
    KeyIn,
    KeyOut,
    KeyRegistered,
    RecordIn,
    SignedIn,
    StatementOut,
    b64url_decode,
    statement_out,
)
from dashboards.refusals import REFUSAL_RESPONSES, Refused, RefusingRoute
from dashboards.route_rules import Authenticated, Public, access
from ledger.entries import EntryKind

log = logging.getLogger("vitaltrail.api.consent")

PATIENT_PAGE = Path(__file__).parent / "static" / "patient.html"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PATIENT_PURPOSE = "PATRQT"  # a patient reading their own record
CONSENTS_DATA = "consents"  # the data class the trail records for a read of consents

# Reason codes of the refusals decided here (the store's own are in access.consent_store).
NOT_A_PATIENT, NOT_STAFF, NO_PATIENT_CONTEXT = "not-a-patient", "not-staff", "no-patient-context"
INSUFFICIENT_SCOPE, NOT_OWN_RECORD, BAD_KEY = "insufficient-scope", "not-own-record", "bad-key"
MALFORMED, JOURNAL_UNAVAILABLE = "malformed", "journal-unavailable"
REVOKED_KEY_REUSED = "revoked-key-reused"
# Store refusals that a statement cannot be (400) beside those the record rules out (409).
CONFLICTS = frozenset({"seq-taken", "no-such-grant", "already-withdrawn", "key-taken"})


@dataclass(frozen=True)
class Rule:
    """Who may call a route: one of ``roles`` (as a user, never an app), and the SMART scope
    that must delegate it."""

    roles: frozenset[str]
    context: Context
    resource: str
    interaction: Interaction
    refusal: str


PATIENT = frozenset({"patient"})
RULES = {
    "me-read": Rule(PATIENT, "patient", "Consent", "r", NOT_A_PATIENT),
    "me-write": Rule(PATIENT, "patient", "Consent", "c", NOT_A_PATIENT),
    "staff-write": Rule(STAFF_ROLES, "user", "Consent", "c", NOT_STAFF),
}


@dataclass(frozen=True)
class ConsentServices:
    """What the consent routes use; opened by the composition root, closed with the app."""

    consents: ConsentStore
    apps: AppStore
    trail: AccessTrail
    refusals: Refusals = field(default_factory=Refusals)  # the refusals decided here
    clock: Callable[[], float] = time.time
    key_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def _services(request: Request) -> ConsentServices:
    services: ConsentServices = request.app.state.consent_services
    return services


Services = Annotated[ConsentServices, Depends(_services)]
PatientId = Annotated[str, PathParam(pattern=ID_PATTERN)]


def _refuse(services: ConsentServices, status: int, reason: str, detail: str) -> Refused:
    services.refusals.add(reason)
    log.debug("consent route refused: %s", reason)
    headers = None
    if reason == INSUFFICIENT_SCOPE:
        headers = {"WWW-Authenticate": TokenError("insufficient_scope", detail).www_authenticate}
    return Refused(status, reason, detail, headers)


def _from_store(refused: ConsentRefused) -> Refused:
    """A store refusal (already counted by the store) as its answer."""
    status = 409 if refused.reason in CONFLICTS else 400
    return Refused(status, refused.reason, refused.detail)


@dataclass(frozen=True)
class Caller:
    """A caller a rule let through; ``patient_id`` is theirs when the rule is a patient's."""

    principal: Principal
    role: str
    patient_id: str | None


def _check(services: ConsentServices, who: Principal, rule: Rule) -> Caller:
    roles = who.roles & rule.roles if who.kind == "user" else frozenset()
    if not roles:
        raise _refuse(services, 403, rule.refusal, "your role may not do this")
    if not who.scopes.permits(rule.context, rule.resource, rule.interaction):
        scope = f"{rule.context}/{rule.resource}.{rule.interaction}"
        raise _refuse(services, 403, INSUFFICIENT_SCOPE, f"this needs the scope {scope}")
    role = min(roles)
    if rule.roles == PATIENT:
        if who.patient is None:
            raise _refuse(services, 403, NO_PATIENT_CONTEXT, "the token names no patient")
        return Caller(who, role, who.patient)
    return Caller(who, role, None)


def _safe(value: str) -> str:
    """A token's identifier as the trail holds it (ASCII without spaces), else its digest."""
    if is_principal(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def consent_router(principal: Callable[..., Any]) -> APIRouter:
    """The consent routes, with ``principal`` the dependency that yields the caller."""
    router = APIRouter(route_class=RefusingRoute, tags=["consent"], responses=REFUSAL_RESPONSES)
    Who = Annotated[Principal, Depends(principal)]

    def rule(name: str) -> Callable[..., Caller]:
        def dependency(services: Services, who: Who) -> Caller:
            return _check(services, who, RULES[name])

        return dependency

    MeRead = Annotated[Caller, Depends(rule("me-read"))]
    MeWrite = Annotated[Caller, Depends(rule("me-write"))]
    Staff = Annotated[Caller, Depends(rule("staff-write"))]

    @router.get("/me", include_in_schema=False)
    @access(Public())  # the page; its data comes from the routes below
    async def patient_page() -> FileResponse:
        return FileResponse(PATIENT_PAGE, media_type="text/html")

    @router.get("/api/v1/me/apps")
    @access(Authenticated())  # role and scope: the table above
    def my_apps(services: Services, caller: MeRead) -> list[AppOut]:
        """The apps a patient may grant access to (registered, not disabled)."""
        return [
            AppOut(client_id=app.client_id, name=app.name or None)
            for app in services.apps.list()
            if not app.disabled
        ]

    @router.post("/api/v1/me/keys", status_code=201)
    @access(Authenticated())  # role and scope: the table above
    def register_key(
        body: KeyIn, services: Services, caller: MeWrite, response: Response
    ) -> KeyRegistered:
        """Register the public key the patient signs consents with. Sending the active key
        again changes nothing (200); a new key is registered and the earlier ones revoked."""
        try:
            key = body.public_key()
        except BadKey as exc:
            raise _refuse(services, 400, BAD_KEY, str(exc)) from None
        patient = caller.patient_id
        assert patient is not None
        keys = services.consents.keys
        now = services.now_ms()
        with services.key_lock:  # one registration at a time: one active key per patient
            try:
                owner = keys.patient_of(key.kid)
                if owner == patient and keys.active(key.kid) is None:
                    raise _refuse(
                        services, 409, REVOKED_KEY_REUSED, "this key was revoked: make a new one"
                    )
                if owner == patient:
                    response.status_code = 200
                    return KeyRegistered(kid=key.kid.hex(), registered=False, revoked=[])
                keys.register(patient, key, now)
                revoked = []
                for earlier in _active_keys(services, patient):
                    if earlier.key != key:
                        keys.revoke(patient, earlier.key, now)
                        revoked.append(earlier.key.kid.hex())
            except ConsentRefused as exc:
                raise _from_store(exc) from None
            except JournalError:
                raise _refuse(services, 503, JOURNAL_UNAVAILABLE, "nothing was recorded") from None
        log.info("registered a patient key (%d earlier revoked)", len(revoked))
        return KeyRegistered(kid=key.kid.hex(), registered=True, revoked=revoked)

    @router.get("/api/v1/me/consents", response_model=None)
    @access(Authenticated())  # role and scope: the table above
    def my_consents(
        services: Services,
        caller: MeRead,
        request: Request,
        format: Annotated[Literal["json", "fhir"], Query()] = "json",
    ) -> ConsentsOut | dict[str, Any]:
        """The patient's statements and whether each grant is in force now; ``format=fhir``:
        a FHIR R4 Bundle of Consent resources. The read is recorded in the access trail
        first (no trail, no data)."""
        patient = caller.patient_id
        assert patient is not None
        now = services.now_ms()
        _record_read(services, caller, patient, now, request.headers.get("x-request-id"))
        store = services.consents
        try:
            statements = store.statements(patient)
            state = store.state(patient)
            keys = store.keys.of_patient(patient)
        except JournalError:
            raise _refuse(
                services, 503, JOURNAL_UNAVAILABLE, "the journal cannot be read"
            ) from None
        if format == "fhir":
            resources = consent_resources([consent for _, consent in statements])
            return {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        registered = [k for k in keys if k.kind is EntryKind.PATIENT_KEY_REGISTERED]
        revoked = {k.key.kid for k in keys if k.kind is EntryKind.PATIENT_KEY_REVOKED}
        return ConsentsOut(
            patient=patient,
            next_seq=state.next_seq(patient),
            keys=[KeyOut(kid=k.key.kid.hex(), active=k.key.kid not in revoked) for k in registered],
            statements=[statement_out(row, c, state, now) for row, c in statements],
        )

    @router.post("/api/v1/me/consents", status_code=201)
    @access(Authenticated())  # role and scope: the table above
    def give_consent(body: SignedIn, services: Services, caller: MeWrite) -> StatementOut:
        """Record a grant or withdrawal the patient signed with their registered key."""
        try:
            message = b64url_decode(body.message)
            signed = SignedConsent.decode(message)
        except (ValueError, ConsentError) as exc:
            raise _refuse(services, 400, MALFORMED, f"not a signed consent: {exc}") from None
        if signed.statement.patient_id != caller.patient_id:
            raise _refuse(services, 403, NOT_OWN_RECORD, "the statement is another patient's")
        now = services.now_ms()
        row = _recorded(services, lambda: services.consents.record_signed(message, now))
        return _answer(services, row, signed.statement.patient_id, now)

    @router.post("/api/v1/patients/{patient_id}/consents", status_code=201)
    @access(Authenticated())  # role and scope: the table above
    def record_for_patient(
        patient_id: PatientId, body: RecordIn, services: Services, caller: Staff
    ) -> StatementOut:
        """Staff record a statement on the patient's behalf; the entry names them and why."""
        store = services.consents
        now = services.now_ms()
        try:
            seq = body.statement.seq
            if seq is None:
                seq = store.next_seq(patient_id)
            statement = body.statement.statement(patient_id, seq, now)
        except ConsentError as exc:
            raise _refuse(services, 400, MALFORMED, str(exc)) from None
        except JournalError:
            raise _refuse(
                services, 503, JOURNAL_UNAVAILABLE, "the journal cannot be read"
            ) from None
        recorder = _safe(caller.principal.subject)
        row = _recorded(
            services,
            lambda: store.record_for_patient(statement, recorder, caller.role, body.reason, now),
        )
        return _answer(services, row, patient_id, now)

    return router


def _active_keys(services: ConsentServices, patient: str) -> list[PatientKeyStatement]:
    keys = services.consents.keys
    return [
        k
        for k in keys.of_patient(patient)
        if k.kind is EntryKind.PATIENT_KEY_REGISTERED and keys.active(k.key.kid) is not None
    ]


def _recorded(services: ConsentServices, record: Callable[[], Row]) -> Row:
    try:
        return record()
    except ConsentRefused as exc:
        raise _from_store(exc) from None
    except JournalError:
        raise _refuse(services, 503, JOURNAL_UNAVAILABLE, "nothing was recorded") from None


def _answer(services: ConsentServices, row: Row, patient: str, now: int) -> StatementOut:
    """The statement just recorded, as the patient's record now shows it."""
    store = services.consents
    state = store.state(patient)
    for recorded_row, consent in store.statements(patient):
        if recorded_row.seq == row.seq:
            return statement_out(recorded_row, consent, state, now)
    raise _refuse(services, 503, JOURNAL_UNAVAILABLE, "the record cannot be read back")


def _record_read(
    services: ConsentServices, caller: Caller, patient: str, now: int, request_id: str | None
) -> None:
    who = caller.principal
    access = Access(
        time_ms=now,
        agent=Agent(
            "user", _safe(who.subject), caller.role, client=_safe(who.client_id),
            jti=_safe(who.token_id),
        ),
        patients=(patient,),
        data=(CONSENTS_DATA,),
        purpose=(PATIENT_PURPOSE,),
        outcome=PERMIT,
        reason="self",
        interaction=READ,
        route="GET /api/v1/me/consents",
        request_id=request_id if request_id is not None and is_principal(request_id) else None,
    )  # fmt: skip
    try:
        services.trail.record(access)
    except JournalError:
        raise _refuse(
            services, 503, JOURNAL_UNAVAILABLE, "the access trail cannot record"
        ) from None


__all__ = ["ConsentServices", "consent_router"]
