"""The API as an OAuth 2.0 resource server: who is calling, and whether they may.

:func:`enforce` runs before every route of the app (an app-wide dependency): it finds the
route's declared rule (``dashboards.route_rules``; none declared: 403), and for every rule but
``Public`` it checks the caller's bearer token (``Authorization: Bearer``, RFC 6750) with the
app's :class:`~access.tokens.TokenVerifier` - 401 with ``WWW-Authenticate`` for a missing or
bad token, 403 for one whose scopes or role do not reach the route. A valid token of a user the
embedded directory has disabled since is a 401 too (``user_disabled``), and that refusal is
recorded in the access trail (reason ``user-disabled``). A principal set by a
session cookie is taken the same way: middleware that checks the cookie puts the verified
``Principal`` on ``request.state.session_principal`` (:data:`SESSION_PRINCIPAL`), and with no
``Authorization`` header that principal is the caller.

Patient data is decided per request by the access policy (``access.policy``) in one of the
gates below, and the decision - permit or refusal - is committed to the access trail before
the handler runs: if it cannot be committed, 503 and nothing is served (fail closed). Each
gate is a dependency the handler takes, so the handler receives the decision and cannot read
before it. Two request headers speak to the policy:

``X-Break-Glass-Reason``  a clinician opening a patient outside their care teams states why;
                          the read is permitted at once, flagged, and shown to the patient.
``X-Purpose-Of-Use``      an HL7 v3 PurposeOfUse code (default: TREAT for clinicians, ETREAT
                          when they break the glass, PATRQT for patients; an app's token may
                          name one in ``purpose_of_use``).

Token verification, decisions and trail commits are blocking (a JWK-set fetch, SQLite with
fsync): they run on the app's read pool, never on the event loop.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, WebSocketException
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import HTTPConnection

from access.care_teams import CareTeamStore
from access.errors import AccessRecordError, TokenError, UserDisabled
from access.fields import is_patient_id
from access.journal import Journal
from access.policy import (
    INSUFFICIENT_SCOPE,
    AccessRequest,
    Decision,
    Policy,
    decide_and_record,
    disabled_user_access,
)
from access.scopes import Scope
from access.tokens import Principal, TokenVerifier
from access.trail import AccessTrail
from access.users import UserStore
from dashboards.bundles import NoSuchReading, recorded_reading
from dashboards.consent_routes import ConsentServices
from dashboards.reads import Readers, read_pool
from dashboards.route_rules import (
    Admin,
    Authenticated,
    BindingToken,
    PatientData,
    Public,
    rule_of,
)
from ingest.store import LatestVital

log = logging.getLogger("vitaltrail.api.access")

SESSION_PRINCIPAL = "session_principal"  # request.state attribute set by the session middleware
BREAK_GLASS_HEADER = "X-Break-Glass-Reason"
PURPOSE_HEADER = "X-Purpose-Of-Use"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
LOINC_PATH = r"^[0-9]{1,7}-[0-9]$"
MAX_INDEX = 2**62

PatientId = Annotated[str, Path(pattern=ID_PATTERN)]


@dataclass
class AccessServices:
    """What the access checks use; opened by the composition root, closed with the app."""

    verifier: TokenVerifier
    policy: Policy
    trail: AccessTrail
    journal: Journal
    care_teams: CareTeamStore
    users: UserStore | None = None
    metrics_token: str | None = None  # a Prometheus scrape token for /metrics, if configured
    consent: ConsentServices | None = None  # the patient's consent routes (consent_routes.py)
    closers: list[Callable[[], None]] = field(default_factory=list)  # e.g. HTTP clients

    def close(self) -> None:
        for close in self.closers:
            close()
        self.journal.close()
        self.care_teams.close()
        if self.users is not None:
            self.users.close()
        if self.consent is not None:
            self.consent.apps.close()


class AccessMetrics:
    """Every refusal counted by its reason code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens_refused = Counter(
            "vitaltrail_api_tokens_refused",
            "Requests refused for their bearer token (401), by reason",
            ["reason"],
            registry=registry,
        )
        self.forbidden = Counter(
            "vitaltrail_api_forbidden",
            "Requests refused by a route's rule (403) before any patient decision, by reason",
            ["reason"],
            registry=registry,
        )
        self.decisions = Counter(
            "vitaltrail_api_access_decisions",
            "Patient-data decisions recorded in the access trail, by outcome and reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.trail_unavailable = Counter(
            "vitaltrail_api_trail_unavailable",
            "Patient-data requests answered 503 because the access trail could not commit",
            registry=registry,
        )


def _services(request: Request) -> AccessServices:
    services: AccessServices = request.app.state.access
    return services


def _metrics(request: Request) -> AccessMetrics:
    metrics: AccessMetrics = request.app.state.access_metrics
    return metrics


def _forbidden(request: Request, reason: str, detail: str) -> HTTPException:
    _metrics(request).forbidden.labels(reason=reason).inc()
    headers = None
    if reason == INSUFFICIENT_SCOPE:
        headers = {"WWW-Authenticate": TokenError("insufficient_scope", detail).www_authenticate}
    return HTTPException(403, detail, headers=headers)


async def authenticate(request: Request) -> Principal:
    """The verified caller: the bearer token's principal, else the session's; 401 otherwise."""
    header = request.headers.get("authorization")
    session = getattr(request.state, SESSION_PRINCIPAL, None)
    if header is None and isinstance(session, Principal):
        return session
    verifier = _services(request).verifier
    try:
        return await read_pool(request).run(lambda _: verifier.verify_authorization(header))
    except TokenError as exc:
        _metrics(request).tokens_refused.labels(reason=exc.reason).inc()
        log.debug("refused a bearer token: %s", exc.reason)
        if isinstance(exc, UserDisabled):
            await _record_disabled(request, exc)
        raise HTTPException(
            exc.status, exc.description, headers={"WWW-Authenticate": exc.www_authenticate}
        ) from None


def _route_template(request: Request) -> str:
    """The route as the trail records it: the template, never the values in the path."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


async def _record_disabled(request: Request, refused: UserDisabled) -> None:
    """Put the refusal of a disabled user's token in the access trail (the patient of the
    path, and the route's data class, when there are). A trail that cannot record it is
    logged: the request is refused either way."""
    rule = rule_of(request.scope.get("route"), request.app)
    patient = request.path_params.get("patient_id")
    access = disabled_user_access(
        refused,
        int(time.time() * 1000),
        _route_template(request),
        (patient,) if isinstance(patient, str) else (),
        (rule.data_class,) if isinstance(rule, PatientData) else (),
        request.headers.get("x-request-id"),
    )
    trail = _services(request).trail
    try:
        await read_pool(request).run(lambda _: trail.record(access))
    except AccessRecordError as exc:
        log.error("the access trail did not record a refusal: %s", type(exc).__name__)
        return
    _metrics(request).decisions.labels(outcome=access.outcome, reason=access.reason).inc()


async def enforce(connection: HTTPConnection) -> None:
    """The one check every route passes first: its declared rule (deny by default). A
    websocket passes only a route declaring ``BindingToken`` (it binds itself by a message),
    and no HTTP route may declare that."""
    rule = rule_of(connection.scope.get("route"), connection.app)
    if connection.scope["type"] == "websocket":
        if not isinstance(rule, BindingToken):
            raise WebSocketException(1008, "this websocket declares no access rule")
        return
    assert isinstance(connection, Request)
    request = connection
    if isinstance(rule, Public):
        return
    if rule is None or isinstance(rule, BindingToken):
        raise _forbidden(request, "undeclared", "this route declares no access rule")
    if isinstance(rule, Admin) and rule.scrape_token and _is_scrape_token(request):
        return
    principal = await authenticate(request)
    request.state.principal = principal
    if isinstance(rule, Authenticated):
        missing = [s for s in rule.scopes if not _granted(principal, s)]
        if missing:
            raise _forbidden(request, INSUFFICIENT_SCOPE, f"needs the scope {missing[0]}")
    elif isinstance(rule, Admin):
        if principal.kind != "user" or "admin" not in principal.roles:
            raise _forbidden(request, "not-admin", "only an administrator may call this")
    elif not isinstance(rule, PatientData):  # pragma: no cover - the rule types are closed
        raise _forbidden(request, "undeclared", "unknown access rule")


def _granted(principal: Principal, required: str) -> bool:
    wanted = Scope.parse(required)
    return any(s.covers(wanted) for s in principal.scopes.scopes)


def _is_scrape_token(request: Request) -> bool:
    token = _services(request).metrics_token
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), token.encode())


def caller(request: Request) -> Principal:
    """The principal :func:`enforce` verified for this request."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # a route without a rule needing one: never hand out a principal
        raise HTTPException(403, "this route declares no authenticated access rule")
    return principal


Caller = Annotated[Principal, Depends(caller)]
BreakGlass = Annotated[
    str | None,
    Header(
        alias=BREAK_GLASS_HEADER,
        max_length=1024,
        description="A clinician's reason for opening a patient outside their care teams",
    ),
]
Purpose = Annotated[
    str | None,
    Header(
        alias=PURPOSE_HEADER,
        max_length=32,
        description="HL7 v3 PurposeOfUse (default: TREAT for clinicians, PATRQT for patients)",
    ),
]


def _data_class(request: Request) -> PatientData:
    rule = rule_of(request.scope.get("route"), request.app)
    if not isinstance(rule, PatientData):
        raise HTTPException(403, "a patient-data gate on a route not declared as patient data")
    return rule


async def decide(
    request: Request,
    principal: Principal,
    asked: AccessRequest | Callable[[Readers], AccessRequest],
) -> Decision:
    """Decide, record the decision durably, and only then return a permit (403 on a refusal,
    503 if the trail cannot record: nothing is served without a record). ``asked`` may be a
    function of a reader thread's connections (resolving the patients), run in the same
    trip to the read pool as the decision and its commit."""
    services = _services(request)
    template = _route_template(request)
    request_id = request.headers.get("x-request-id")

    def judged(r: Readers) -> tuple[AccessRequest, Decision]:
        request_ = asked(r) if callable(asked) else asked
        return request_, decide_and_record(
            services.policy, services.trail, principal, request_, template, request_id
        )

    metrics = _metrics(request)
    try:
        decided, decision = await read_pool(request).run(judged)
    except AccessRecordError as exc:
        metrics.trail_unavailable.inc()
        log.error("the access trail did not record a decision: %s", type(exc).__name__)
        raise HTTPException(
            503, "the access trail cannot record this request: nothing is served",
            headers={"Retry-After": "1"},
        ) from None  # fmt: skip
    metrics.decisions.labels(outcome=decision.outcome, reason=decision.reason).inc()
    if decision.permit or (decided.patients is None and decision.reason == "none-visible"):
        return decision
    headers = None
    if decision.reason == INSUFFICIENT_SCOPE:
        headers = {
            "WWW-Authenticate": TokenError(
                "insufficient_scope", "the token's scopes do not delegate this read"
            ).www_authenticate
        }
    raise HTTPException(403, f"access refused: {decision.reason}", headers=headers)


def _path_gate(write: bool) -> Callable[..., Awaitable[Decision]]:
    async def gate(
        request: Request,
        principal: Caller,
        patient_id: PatientId,
        break_glass: BreakGlass = None,
        purpose: Purpose = None,
    ) -> Decision:
        rule = _data_class(request)
        asked = AccessRequest(
            rule.data_class, (patient_id,), (), (), purpose, break_glass, write=write
        )
        return await decide(request, principal, asked)

    return gate


path_patient = _path_gate(write=False)
"""The gate of a route naming its patient in the path."""
path_patient_write = _path_gate(write=True)
"""The gate of a route that writes to the patient named in the path (staff documenting an
observation): decided and recorded as a ``create``, before anything is written."""


async def path_patient_code(
    request: Request,
    principal: Caller,
    patient_id: PatientId,
    code: Annotated[str, Path(pattern=LOINC_PATH, description="LOINC code")],
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> Decision:
    """The gate of a route naming a patient and one LOINC code: a consent must cover that
    code (a vital-signs grant covers the vital signs, not glucose)."""
    rule = _data_class(request)
    asked = AccessRequest(rule.data_class, (patient_id,), (), (code,), purpose, break_glass)
    return await decide(request, principal, asked)


async def reading_patient(
    request: Request,
    principal: Caller,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX, description="a ledger entry index")],
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> Decision:
    """The gate of a reading's routes: the reading's patient (from its device) is resolved
    first, then decided on like any other (404 before any decision if there is no reading)."""
    rule = _data_class(request)

    def resolve(r: Readers) -> AccessRequest:
        recorded = recorded_reading(r.ledger, index)
        device = r.registry.get(recorded.reading.device_id)
        patients = (device.patient_id,) if device is not None else ()
        codes = tuple(sorted({s.code for s in recorded.reading.samples}))
        return AccessRequest(rule.data_class, patients, (), codes, purpose, break_glass)

    try:
        return await decide(request, principal, resolve)
    except NoSuchReading as exc:
        raise HTTPException(404, str(exc)) from exc


SubscriptionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")]
SUBSCRIPTION_PATIENT = "subscription_patient"  # app.state: (owner, id) -> its patient, or None


async def subscription_patient(
    request: Request, principal: Caller, sub_id: SubscriptionId, purpose: Purpose = None
) -> Decision:
    """The gate of a FHIR subscription's routes that carry its patient's data (``$events``):
    the patient its filter names, decided like a read of that patient (404 before any
    decision when the caller owns no such subscription). The subscriptions' store answers
    through ``app.state.subscription_patient``."""
    rule = _data_class(request)
    patient_of: Callable[[Principal, str], str | None] = getattr(
        request.app.state, SUBSCRIPTION_PATIENT
    )
    patient = await read_pool(request).run(lambda _: patient_of(principal, sub_id))
    if patient is None:
        raise HTTPException(404, f"no Subscription/{sub_id} of yours")
    asked = AccessRequest(rule.data_class, (patient,), (), (), purpose)
    return await decide(request, principal, asked)


@dataclass(frozen=True)
class Listing:
    """A ward listing's decision, and the latest values it permits (nothing else was read
    out: the rows of patients the caller may not see are dropped before the handler)."""

    decision: Decision
    latest: list[LatestVital]


async def visible_patients(request: Request, principal: Caller, purpose: Purpose = None) -> Listing:
    """The gate of a ward listing: of the patients with values in the store, those the caller
    may see; with none visible it is a 200 of nothing (recorded as ``none-visible``)."""
    rule = _data_class(request)
    latest: list[LatestVital] = []

    def candidates(r: Readers) -> AccessRequest:
        latest.extend(r.store.latest())
        there = sorted({v.patient_id for v in latest if is_patient_id(v.patient_id)})
        return AccessRequest(rule.data_class, None, tuple(there), (), purpose)

    decision = await decide(request, principal, candidates)
    shown = set(decision.patients) if decision.permit else set()
    return Listing(
        decision, [v for v in latest if v.patient_id in shown and decision.shows(v.code)]
    )


async def own_record(request: Request, principal: Caller, purpose: Purpose = None) -> Decision:
    """The gate of a patient's own routes (``/me/...``): the caller's own patient record."""
    rule = _data_class(request)
    policy = _services(request).policy
    own = principal.patient if principal.kind == "user" else None
    if own is None and principal.kind == "user" and "patient" in principal.roles:
        own = await read_pool(request).run(lambda _: policy.patient_of(principal.subject))
    asked = AccessRequest(rule.data_class, (own,) if own else (), (), (), purpose)
    return await decide(request, principal, asked)


PathPatient = Annotated[Decision, Depends(path_patient)]
PathPatientWrite = Annotated[Decision, Depends(path_patient_write)]
PathPatientCode = Annotated[Decision, Depends(path_patient_code)]
ReadingPatient = Annotated[Decision, Depends(reading_patient)]
VisiblePatients = Annotated[Listing, Depends(visible_patients)]
OwnRecord = Annotated[Decision, Depends(own_record)]
SubscriptionPatient = Annotated[Decision, Depends(subscription_patient)]
GATES = (
    path_patient, path_patient_code, path_patient_write, reading_patient, visible_patients,
    own_record, subscription_patient,
)  # fmt: skip
