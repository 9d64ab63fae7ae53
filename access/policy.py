"""Who may read which patient's data: the one place it is decided, with the rules as data.

After HAPI FHIR's ``AuthorizationInterceptor`` rule list and Medplum's ``AccessPolicy``: the
web layer hands :meth:`Policy.decide` the verified caller (a ``Principal``), the patients asked
for (or, for a ward listing, the patients there are, of which the caller sees those they may),
the data class, the purpose of use and an optional break-glass reason, and gets back a
:class:`Decision` it records in the access trail before anything is served.

The rules (:data:`RULES`), first match by role::

    role       scope contexts that delegate   basis                                        writes
    clinician  user/                          their care teams' patients; break-glass outside  yes
    patient    patient/                       their own record (token ``patient`` / user's id) no
    app        system/, patient/ (one)        a consent of that patient to the app, in force   no
    admin      (no rule)                      reads no patient data                            no

A rule applies only when the token's SMART scopes delegate the interaction too (``.r`` for a
read, ``.s`` for a listing, ``.c`` for a write) on the data's FHIR resource (vital signs and
readings are Observations, proof bundles Provenance): scopes only delegate, the rule still
decides. A write is what staff document about a patient (consciousness, oxygen: clinical.
documented); only a rule that ``writes`` may, on the same basis as it reads.
Deny by default: no rule, no scope, no basis, no data. Every refusal has a reason code.

Data classes: ``vital-signs``, ``readings`` and ``proofs`` are what a route serves; what a
consent must cover, and what the trail records, are the consent data classes of what the
response holds (``vital-signs`` for the FHIR vital signs, a LOINC code for anything else, such
as glucose), so the trail's own re-check (access.trail) and the auditor (access.compliance)
judge an app's permit by exactly the grants it relied on. ``access-log`` (who read a patient's
data, as AuditEvents) and ``consents`` (the patient's Consents) are granted by no consent: only
the patient reads them. ``patient`` and ``devices`` (the FHIR Patient and Device resources) are
what a vital-signs grant shares along with the readings that reference them.

A search that names its patients (FHIR ``Observation?patient=p-17``) is decided like a read of
those patients but is a search: the scopes must delegate ``s``, and the trail records a query.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from access.consent import VITAL_SIGNS, ConsentStatement, Grantee
from access.consent_state import VITAL_SIGN_CODES, covers
from access.errors import ConsentRefused, UserDisabled
from access.fields import is_code, is_patient_id, is_principal, is_purpose, is_text
from access.scopes import Context, Interaction
from access.tokens import Principal
from access.trail import (
    BREAK_GLASS,
    CREATE,
    DENY,
    PERMIT,
    READ,
    SEARCH,
    Access,
    AccessTrail,
    Agent,
)  # fmt: skip

DataClass = Literal[
    "vital-signs", "readings", "proofs", "access-log", "patient", "devices", "consents"
]
READINGS, PROOFS, ACCESS_LOG = "readings", "proofs", "access-log"
PATIENT_RECORD, DEVICES, CONSENTS = "patient", "devices", "consents"
DATA_CLASSES: tuple[DataClass, ...] = (
    "vital-signs", "readings", "proofs", "access-log", "patient", "devices", "consents"
)  # fmt: skip
# The FHIR resource type each data class is served as, for the scope check.
RESOURCE: Mapping[str, str] = {
    VITAL_SIGNS: "Observation",
    READINGS: "Observation",
    PROOFS: "Provenance",
    ACCESS_LOG: "AuditEvent",  # who read the patient's data: no consent grants it to an app
    PATIENT_RECORD: "Patient",  # the patient and the devices their vital signs reference:
    DEVICES: "Device",  # a grant of vital signs shares these too
    CONSENTS: "Consent",  # the patient's consents: no consent grants them to an app
}
OWN_ONLY = frozenset({ACCESS_LOG, CONSENTS})  # data classes no consent grants
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"

CLINICIAN, PATIENT, ADMIN, APP = "clinician", "patient", "admin", "app"
Basis = Literal["care-team", "self", "consent"]
# The HL7 v3 PurposeOfUse a request is for when it names none.
DEFAULT_PURPOSE: Mapping[str, str] = {CLINICIAN: "TREAT", PATIENT: "PATRQT", APP: "TREAT"}
EMERGENCY_PURPOSE = "ETREAT"  # a break-glass read's purpose when the request names none
PURPOSE_CLAIM = "purpose_of_use"  # an app's token may name its purpose (a code, or a list)

# Refusal reason codes (each counted by the web layer and recorded in the trail).
NO_ROLE = "no-role"
ADMIN_READS_NONE = "admin-reads-no-patient-data"
INSUFFICIENT_SCOPE = "insufficient-scope"
BAD_PURPOSE = "bad-purpose"
BAD_BREAK_GLASS = "bad-break-glass-reason"
NOT_IN_CARE_TEAM = "not-in-care-team"
NOT_OWN_RECORD = "not-own-record"
NO_PATIENT_CONTEXT = "no-patient-context"
NO_CONSENT = "no-consent"
NONE_VISIBLE = "none-visible"  # a listing with nobody the caller may see: nothing disclosed
USER_DISABLED = "user-disabled"  # a valid token of a user disabled since (refused at the token)
APP_DISABLED = "app-disabled"  # a valid token of an app disabled since (refused at the token)
MAY_NOT_WRITE = "may-not-write"  # a role that reads but does not document (patient, app)
DENIALS = (
    NO_ROLE, ADMIN_READS_NONE, INSUFFICIENT_SCOPE, BAD_PURPOSE, BAD_BREAK_GLASS,
    NOT_IN_CARE_TEAM, NOT_OWN_RECORD, NO_PATIENT_CONTEXT, NO_CONSENT, NONE_VISIBLE,
    USER_DISABLED, APP_DISABLED, MAY_NOT_WRITE,
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """Who (a role), which scope contexts may delegate to them, on what basis they read, and
    the refusal when the basis does not hold."""

    role: str
    contexts: tuple[Context, ...]
    basis: Basis
    refusal: str
    break_glass: bool = False  # may read outside the basis after stating a reason
    writes: bool = False  # may document observations, on the same basis


RULES: tuple[Rule, ...] = (
    Rule(CLINICIAN, ("user",), "care-team", NOT_IN_CARE_TEAM, break_glass=True, writes=True),
    Rule(PATIENT, ("patient",), "self", NOT_OWN_RECORD),
    Rule(APP, ("system", "patient"), "consent", NO_CONSENT),
)


@dataclass(frozen=True)
class AccessRequest:
    """What a request asks for. ``patients`` None: a listing, of those among ``candidates``
    (every patient there is) the caller may see."""

    data_class: DataClass
    patients: tuple[str, ...] | None
    candidates: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()  # LOINC codes the response holds, when known before reading
    purpose: str | None = None  # None: the token's, else the role's default
    break_glass: str | None = None
    search: bool = False  # a search naming its patients (FHIR ``Observation?patient=``)
    write: bool = False  # documenting an observation of the named patients

    @property
    def interaction(self) -> str:
        if self.write:
            return CREATE
        return SEARCH if self.patients is None or self.search else READ

    def consent_classes(self) -> tuple[str, ...]:
        """What a consent must cover for this response, and what the trail records."""
        if self.data_class in OWN_ONLY:
            return (self.data_class,)
        if not self.codes:
            return (VITAL_SIGNS,)
        return tuple(sorted({VITAL_SIGNS if c in VITAL_SIGN_CODES else c for c in self.codes}))


@dataclass(frozen=True)
class Decision:
    """A permit or a refusal, with everything the access trail records of it."""

    permit: bool
    reason: str  # why: care-team, self, consent, break-glass, or a refusal code
    role: str
    interaction: str
    patients: tuple[str, ...]  # those asked for; of a permitted listing, those to show
    data: tuple[str, ...]
    purpose: tuple[str, ...]
    consents: tuple[tuple[str, int], ...] = ()  # (patient, seq) of the grants relied on
    break_glass: str | None = None
    granted: frozenset[str] | None = field(default=None)  # an app's consented data; None: all
    # the token's Observation scopes hold only for the vital-signs category (SMART v2
    # ``...Observation.rs?category=...|vital-signs``): no glucose, whatever else allows it
    vital_signs_only: bool = False

    @property
    def outcome(self) -> str:
        return PERMIT if self.permit else DENY

    @property
    def is_break_glass(self) -> bool:
        return self.break_glass is not None

    @property
    def filtered(self) -> bool:
        """Whether :meth:`shows` may leave a value out (a consent's or a scope's limit)."""
        return self.granted is not None or self.vital_signs_only

    def shows(self, code: str) -> bool:
        """Whether a value of LOINC ``code`` may be in the response (an app sees only what
        its consents cover, e.g. no glucose on a vital-signs grant; a token whose scopes are
        restricted to the vital-signs category sees no glucose either)."""
        if self.vital_signs_only and code not in VITAL_SIGN_CODES:
            return False
        return self.granted is None or covers(self.granted, code)

    def access(
        self, principal: Principal, time_ms: int, route: str, request_id: str | None = None
    ) -> Access:
        """The access event to record."""
        kind = "app" if principal.kind == "app" else "user"
        agent = Agent(
            kind,
            safe_id(principal.subject),
            self.role,
            client=safe_id(principal.client_id) if kind == "user" else None,
            jti=safe_id(principal.token_id),
        )
        return Access(
            time_ms=time_ms,
            agent=agent,
            patients=self.patients,
            data=self.data,
            purpose=self.purpose,
            outcome=self.outcome,
            reason=self.reason,
            interaction=self.interaction,
            route=route,
            break_glass=self.break_glass,
            consents=self.consents,
            request_id=request_id if request_id is not None and is_principal(request_id) else None,
        )


def disabled_user_access(
    refused: UserDisabled,
    time_ms: int,
    route: str,
    patients: tuple[str, ...],
    data: tuple[str, ...],
    request_id: str | None = None,
) -> Access:
    """The access event of a request refused because its user was disabled since the token
    was issued: no decision was made, but the refusal is on record like every other."""
    roles = sorted(r for r in refused.roles if is_code(r))
    app = refused.kind == "app"
    agent = Agent(
        refused.kind,
        safe_id(refused.subject),
        "app" if app else roles[0] if roles else "none",
        client=safe_id(refused.client_id),
        jti=safe_id(refused.token_id),
    )
    return Access(
        time_ms=time_ms,
        agent=agent,
        patients=tuple(p for p in patients if is_patient_id(p)),
        data=data,
        purpose=(),
        outcome=DENY,
        reason=APP_DISABLED if app else USER_DISABLED,
        interaction=READ,
        route=route,
        request_id=request_id if request_id is not None and is_principal(request_id) else None,
    )


ConsentLookup = Callable[[str, Grantee, str, str, int], ConsentStatement | None]


def _no_patient(_: str) -> str | None:
    return None


class Policy:
    """Decides each request by :data:`RULES`, asking the care teams and consents in force."""

    def __init__(
        self,
        care_team: Callable[[str], frozenset[str]],
        consent: ConsentLookup,
        *,
        patient_of_user: Callable[[str], str | None] = _no_patient,
        rules: tuple[Rule, ...] = RULES,
    ) -> None:
        self._care_team = care_team  # clinician user name -> their patients
        self._consent = consent  # ConsentStore.in_force
        self._patient_of_user = patient_of_user  # a patient account's own id, if the token lacks it
        self.rules = rules

    def patient_of(self, user: str) -> str | None:
        """The patient a user account is, when the user directory knows it."""
        return self._patient_of_user(user)

    def rule_for(self, principal: Principal) -> Rule | None:
        roles = {APP} if principal.kind == "app" else principal.roles
        return next((rule for rule in self.rules if rule.role in roles), None)

    def decide(self, principal: Principal, request: AccessRequest, now_ms: int) -> Decision:
        rule = self.rule_for(principal)
        asked = request.patients if request.patients is not None else ()
        data = request.consent_classes()

        def deny(reason: str, role: str, purpose: tuple[str, ...] = ()) -> Decision:
            return Decision(False, reason, role, request.interaction, asked, data, purpose)

        if rule is None:
            role = ADMIN if ADMIN in principal.roles and principal.kind != "app" else "none"
            return deny(ADMIN_READS_NONE if role == ADMIN else NO_ROLE, role)
        purpose = request.purpose or _claimed_purpose(principal) or DEFAULT_PURPOSE[rule.role]
        if not is_purpose(purpose):
            return deny(BAD_PURPOSE, rule.role)
        purposes = (purpose,)
        if request.write and not rule.writes:
            return deny(MAY_NOT_WRITE, rule.role, purposes)
        contexts = self._delegated(principal, rule, request)
        if not contexts:
            return deny(INSUFFICIENT_SCOPE, rule.role, purposes)
        category_only = not self._delegated(principal, rule, request, assume_category=False)
        if category_only and any(c not in VITAL_SIGN_CODES for c in request.codes):
            return deny(INSUFFICIENT_SCOPE, rule.role, purposes)  # glucose is not a vital sign
        # A patient/ scope means the one patient of the token's launch context.
        only = None
        if rule.basis == "self":  # a patient account: the token's patient, or the user's
            only = principal.patient or self._patient_of_user(principal.subject)
        elif contexts == ("patient",):
            only = principal.patient
        if only is None and (rule.basis == "self" or contexts == ("patient",)):
            return deny(NO_PATIENT_CONTEXT, rule.role, purposes)
        grantee = Grantee("app", principal.client_id)
        team = self._care_team(principal.subject) if rule.basis == "care-team" else frozenset()

        def allowed(patient: str) -> tuple[bool, tuple[tuple[str, int], ...]]:
            if only is not None and patient != only:
                return False, ()
            if rule.basis == "care-team":
                return patient in team, ()
            if rule.basis == "self":
                return True, ()
            grants = [self._consent(patient, grantee, d, purpose, now_ms) for d in data]
            if any(g is None for g in grants):
                return False, ()
            return True, tuple((patient, g.seq) for g in grants if g is not None)

        granted = frozenset(data) if rule.basis == "consent" else None
        relied: list[tuple[str, int]] = []
        if request.patients is None:  # a listing: those the caller may see
            shown: list[str] = []
            for patient in sorted(set(request.candidates)):
                ok, consents = allowed(patient)
                if ok:
                    shown.append(patient)
                    relied.extend(consents)
            if not shown:
                return deny(NONE_VISIBLE, rule.role, purposes)
            return Decision(
                True, rule.basis, rule.role, SEARCH, tuple(shown), data, purposes,
                tuple(relied), granted=granted, vital_signs_only=category_only,
            )  # fmt: skip
        refused = False
        for patient in request.patients:
            ok, consents = allowed(patient)
            refused |= not ok
            relied.extend(consents)
        if not refused and request.patients:
            return Decision(
                True, rule.basis, rule.role, request.interaction, asked, data, purposes,
                tuple(relied), granted=granted, vital_signs_only=category_only,
            )  # fmt: skip
        reason = (request.break_glass or "").strip()
        if rule.break_glass and reason:
            if not is_text(reason):
                return deny(BAD_BREAK_GLASS, rule.role, purposes)
            urgent = purposes if request.purpose else (EMERGENCY_PURPOSE,)
            return Decision(
                True, BREAK_GLASS, rule.role, request.interaction, asked, data, urgent, (), reason,
                vital_signs_only=category_only,
            )  # fmt: skip
        return deny(rule.refusal, rule.role, purposes)

    @staticmethod
    def _delegated(
        principal: Principal, rule: Rule, request: AccessRequest, *, assume_category: bool = True
    ) -> tuple[Context, ...]:
        """The scope contexts of the rule in which the token's scopes delegate this request.
        An Observation request is of the vital-signs category (its data class); without
        ``assume_category``, only scopes with no category restriction count."""
        letter: Interaction = (
            "c" if request.write else "s" if request.interaction == SEARCH else "r"
        )
        resource = RESOURCE[request.data_class]
        facts = {"category": CATEGORY} if resource == "Observation" and assume_category else {}
        return tuple(
            c for c in rule.contexts if principal.scopes.permits(c, resource, letter, facts)
        )


def decide_and_record(
    policy: Policy,
    trail: AccessTrail,
    principal: Principal,
    request: AccessRequest,
    route: str,
    request_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Decision:
    """Decide, and commit the decision to the trail before returning it: the one way a read of
    patient data is judged, for a request (the API's gates) or a delivery (FHIR subscription
    notifications). A consent withdrawn between the decision and its commit is decided once
    more (then a refusal). :class:`~access.errors.JournalError`: nothing was recorded - the
    caller must serve nothing."""
    for attempt in (1, 2):
        now = int(clock() * 1000)
        decision = policy.decide(principal, request, now)
        try:
            trail.record(decision.access(principal, now, route, request_id))
        except ConsentRefused:  # a consent withdrawn between decision and record
            if attempt == 2:
                raise
            continue
        return decision
    raise AssertionError("unreachable")


def _claimed_purpose(principal: Principal) -> str | None:
    """The purpose an app's token names (``purpose_of_use``: a code, or a list of one)."""
    if principal.kind != "app":
        return None
    value = principal.claims.get(PURPOSE_CLAIM)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else None


def safe_id(value: str) -> str:
    """A token's own identifiers as the trail can hold them (ASCII, no spaces, at most 255):
    anything else is recorded as its digest, never dropped."""
    if is_principal(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
