"""FHIR subscriptions over HTTP: the Subscription resource, the Backport IG's operations, the
websocket. The work is in ``fhirserver`` (topics, the resource, the store, the engine); these
routes check who calls and translate.

Who may (SMART App Launch v2 scopes, in the context the access policy gives the caller's role:
``user/`` a clinician, ``patient/`` a patient, ``system/`` or ``patient/`` an app; an
administrator reads no patient data and subscribes to none):

``POST   /fhir/Subscription``                          ``Subscription.c``, and a permit to read
                                                       the filter's patient now (the access
                                                       policy, recorded in the trail: a refusal
                                                       is a 403 OperationOutcome and on record)
``GET    /fhir/Subscription``, ``/{id}``               ``Subscription.s`` / ``.r``: one's own
``DELETE /fhir/Subscription/{id}``                     ``Subscription.d``: one's own
``GET    /fhir/Subscription/{id}/$status``             ``.r``: its status only, no patient
                                                       data (the type-level ``$status`` is not
                                                       offered: a search lists one's own)
``GET    /fhir/Subscription/{id}/$events``             patient data: the ``SubscriptionPatient``
                                                       gate decides and records first
``POST   /fhir/Subscription/{id}/$get-ws-binding-token``  ``.r``: a websocket subscription's
``WS     /fhir/ws``                                    ``bind-with-token <token>``; each
                                                       notification decided and recorded first

Somebody else's subscription is a 404, never a 403: its existence is not disclosed. A
subscription is decided without ``X-Break-Glass-Reason`` (an emergency read is one read, not a
standing feed) and with the token's purpose of use (or the role's), as its deliveries are.
Errors are ``OperationOutcome`` with the reason code in ``issue.details``.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime.
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from access.policy import INSUFFICIENT_SCOPE, AccessRequest
from access.scopes import Interaction
from access.tokens import Principal
from dashboards.access_deps import (
    SUBSCRIPTION_PATIENT,
    AccessServices,
    Caller,
    SubscriptionId,
    SubscriptionPatient,
    decide,
)
from dashboards.fhir_answers import (
    FHIR_BASE,
    OUTCOME_SCHEMA,
    RESOURCE_SCHEMA,
    RESPONSES,
    FhirError,
    FhirJSON,
    FhirRoute,
)
from dashboards.fhir_routes import FHIR_CAPABILITIES, negotiated
from dashboards.route_rules import Authenticated, BindingToken, PatientData, access
from fhirserver.delivery_access import DeliveryAccess
from fhirserver.index import ObservationIndex
from fhirserver.media import FHIR_JSON
from fhirserver.notifications import binding_token_parameters, notification_bundle, status_bundle
from fhirserver.subscription_engine import (
    EngineConfig,
    NewObservations,
    SubscriptionEngine,
    codes_of,
)
from fhirserver.subscription_store import StoredSubscription, SubscriptionStore, owner_key
from fhirserver.subscriptions import (
    CONTENTS,
    Status,
    SubscriptionError,
    SubscriptionLimits,
    capability_entry,
    parse_subscription,
    subscription_resource,
)
from fhirserver.ws_binding import BindingTokens, TooManyTokens

log = logging.getLogger("vitaltrail.api.fhir.subscriptions")

RESOURCE = "Subscription"
MAX_EVENTS_PER_ANSWER = 100
MAX_EVENT_NUMBER = 2**62


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A response of the OpenAPI document (its own copy: FastAPI merges into these)."""
    return {"description": description, "content": {FHIR_JSON: {"schema": deepcopy(schema)}}}


CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _answer("the Subscription as stored (Location: its URL)", RESOURCE_SCHEMA),
    413: _answer("a body over 16 KiB", OUTCOME_SCHEMA),
    415: _answer("a body that is not FHIR JSON", OUTCOME_SCHEMA),
    429: _answer("the caller's or the server's subscriptions are at their bound", OUTCOME_SCHEMA),
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {204: {"description": "deleted"}}
SUBSCRIPTION_BODY = {
    "required": True,
    "description": "a topic-based Subscription (the R5 Backport IG's profile on R4)",
    "content": {
        FHIR_JSON: {
            "schema": {
                "type": "object",
                "required": ["resourceType", "status", "criteria", "channel"],
                "properties": {"resourceType": {"type": "string", "enum": ["Subscription"]}},
            }
        }
    },
}


@dataclass(frozen=True)
class SubscriptionSetup:
    """What the composition root decides: where subscriptions live, their bounds, and how the
    engine learns of new Observations."""

    path: Path
    base_url: str
    source: Callable[[ObservationIndex], NewObservations]  # opened on the engine's thread
    limits: SubscriptionLimits = field(default_factory=SubscriptionLimits)
    engine: EngineConfig = field(default_factory=EngineConfig)
    per_owner: int = 10
    total: int = 1000
    keep_events: int = 1000
    binding_ttl_s: float = 300.0
    max_body_bytes: int = 16_384
    embedded_issuer: str | None = None  # whose users the directory can say are disabled

    @property
    def websocket_url(self) -> str:
        scheme, _, rest = self.base_url.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/fhir/ws"


@dataclass(frozen=True)
class SubscriptionServices:
    setup: SubscriptionSetup
    store: SubscriptionStore
    engine: SubscriptionEngine


def _refused(
    status: int, issue: str, reason: str, text: str, headers: dict[str, str] | None = None
) -> FhirError:
    return FhirError(status, text, code=issue, reason=reason, headers=headers)


def add_subscriptions(app: FastAPI, setup: SubscriptionSetup) -> None:
    """The routes of FHIR subscriptions and the websocket; the engine starts and stops with
    the app."""
    rest, websocket = subscription_routers(setup)
    app.include_router(rest)
    app.include_router(websocket)


def _services(request: Request) -> SubscriptionServices:
    services: SubscriptionServices = request.app.state.subscriptions
    return services


def _check_scope(request: Request, principal: Principal, interaction: Interaction) -> None:
    """The caller's role may subscribe, and a scope of its context delegates ``interaction``
    on Subscription."""
    access_services: AccessServices = request.app.state.access
    rule = access_services.policy.rule_for(principal)
    if rule is None:
        raise _refused(403, "forbidden", "no-role", "this role has no patient data to subscribe to")
    if not any(principal.scopes.permits(c, RESOURCE, interaction) for c in rule.contexts):
        wanted = f"{rule.contexts[0]}/{RESOURCE}.{interaction}"
        raise _refused(
            403, "forbidden", INSUFFICIENT_SCOPE, f"needs the scope {wanted}",
            {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{wanted}"'},
        )  # fmt: skip


async def _owned(
    request: Request, principal: Principal, sub_id: str, interaction: Interaction
) -> StoredSubscription:
    """The caller's own subscription, when a scope of theirs delegates ``interaction`` on it."""
    _check_scope(request, principal, interaction)
    sub = await run_in_threadpool(_services(request).store.get, sub_id)
    if sub is None or not sub.owned_by(principal):
        raise _refused(
            404, "not-found", "no-such-subscription", f"no Subscription/{sub_id} of yours"
        )
    return sub


def _event_number(text: str | None, default: int) -> int:
    """An event number of ``$events`` (a string of digits, 1 to 2^62), or ``default``."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_EVENT_NUMBER:
        raise _refused(
            400, "value", "bad-event-number", f"an event number is from 1 to {MAX_EVENT_NUMBER}"
        )
    return int(text)


def _resource(services: SubscriptionServices, sub: StoredSubscription) -> dict[str, Any]:
    return subscription_resource(sub.id, sub.spec, sub.status, sub.error, services.setup.base_url)


async def _body(request: Request, limit: int) -> object:
    """The JSON body, at most ``limit`` bytes, of a FHIR JSON content type."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in (FHIR_JSON, "application/json"):
        raise _refused(415, "not-supported", "unsupported-media-type", f"send {FHIR_JSON}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _refused(
                413, "too-long", "body-too-large", f"a Subscription is at most {limit} bytes"
            )
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise _refused(400, "structure", "malformed", "the body is not JSON") from None


class EngineCollector(Collector):
    """The engine's counts as Prometheus counters (``/metrics``)."""

    def __init__(self, engine: SubscriptionEngine) -> None:
        self._stats = engine.stats

    def collect(self) -> Iterator[Metric]:
        for name, help_text in (
            ("events", "New Observations matched to a subscription"),
            ("sent", "Notifications an endpoint took or a websocket was sent"),
            ("failed", "Rest-hook deliveries that failed (retried, then the subscription stops)"),
            ("refused", "Notifications the access policy refused (the subscription stopped)"),
            ("slow_sockets", "Websockets closed for not taking a notification in time"),
        ):
            yield CounterMetricFamily(
                f"vitaltrail_fhir_subscription_{name}", help_text, value=getattr(self._stats, name)
            )


def subscription_routers(setup: SubscriptionSetup) -> tuple[APIRouter, APIRouter]:
    """The REST routes (FHIR JSON, refusals as OperationOutcome, the engine's lifespan) and the
    websocket's (apart: a websocket takes none of the REST routes' dependencies)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access_services: AccessServices = app.state.access
        users = access_services.users
        apps = access_services.consent.apps if access_services.consent is not None else None

        def disabled(principal: Principal) -> bool:
            """Whether the embedded directory has disabled the subscription's owner since."""
            if principal.issuer != setup.embedded_issuer:
                return False  # the provider's own users and apps are disabled there
            if principal.kind == "app":
                return apps is not None and apps.is_disabled(principal.client_id)
            return users is not None and users.is_disabled(principal.subject)

        store = SubscriptionStore(setup.path, keep_events=setup.keep_events)
        judge = DeliveryAccess(access_services.policy, access_services.trail, disabled=disabled)
        tokens = BindingTokens(setup.binding_ttl_s)
        index = app.state.fhir_index  # the process's observation index (dashboards.app)
        engine = SubscriptionEngine(
            store, lambda: setup.source(index), judge, setup.base_url, tokens=tokens,
            config=setup.engine,
        )  # fmt: skip
        app.state.subscriptions = SubscriptionServices(setup, store, engine)
        metrics = CollectorRegistry()
        metrics.register(EngineCollector(engine))
        app.state.metrics.append(metrics)

        def patient_of(principal: Principal, sub_id: str) -> str | None:
            sub = store.get(sub_id)
            return sub.spec.patient if sub is not None and sub.owned_by(principal) else None

        setattr(app.state, SUBSCRIPTION_PATIENT, patient_of)
        setattr(app.state, FHIR_CAPABILITIES, [capability_entry(setup.base_url)])
        stop = asyncio.Event()
        timer = asyncio.create_task(engine.run(stop))
        try:
            yield
        finally:
            stop.set()
            await timer
            await engine.close()
            store.close()

    router = APIRouter(
        prefix=FHIR_BASE,
        tags=["fhir"],
        route_class=FhirRoute,
        dependencies=[Depends(negotiated)],
        default_response_class=FhirJSON,
        responses=RESPONSES,
        lifespan=lifespan,
    )
    websockets = APIRouter(prefix=FHIR_BASE, tags=["fhir"])

    @router.post(
        "/Subscription",
        status_code=201,
        responses=CREATE_RESPONSES,
        openapi_extra={"requestBody": SUBSCRIPTION_BODY},
    )
    @access(Authenticated())
    async def create(request: Request, principal: Caller) -> Response:
        """Create a topic-based Subscription (R5 Backport IG on R4)."""
        services = _services(request)
        _check_scope(request, principal, "c")
        doc = await _body(request, setup.max_body_bytes)
        now_ms = services.engine.now_ms()
        try:
            spec = parse_subscription(doc, setup.base_url, now_ms, setup.limits)
        except SubscriptionError as exc:
            raise _refused(400, exc.issue, exc.reason, str(exc)) from None
        # decided and recorded: a refusal is a 403 (503 if the trail cannot record it)
        await decide(request, principal, AccessRequest(spec.topic.data_class, (spec.patient,)))
        start = await services.engine.head()
        try:
            sub = await run_in_threadpool(
                services.store.create, principal, spec, now_ms, start,
                per_owner=setup.per_owner, total=setup.total,
            )  # fmt: skip
        except SubscriptionError as exc:
            raise _refused(429, exc.issue, exc.reason, str(exc)) from None
        log.info("subscription %s created (%s)", sub.id, spec.channel)
        return FhirJSON(
            _resource(services, sub), 201, headers={"Location": f"/fhir/Subscription/{sub.id}"}
        )

    @router.get("/Subscription")
    @access(Authenticated())
    async def search(
        request: Request,
        principal: Caller,
        status: Annotated[list[Status] | None, Query(description="any of these")] = None,
    ) -> Response:
        """One's own subscriptions (a searchset), of a ``status`` if it is given."""
        _check_scope(request, principal, "s")
        services = _services(request)
        subs = [
            s
            for s in await run_in_threadpool(services.store.of_owner, principal)
            if not status or s.status in status
        ]
        return FhirJSON(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(subs),
                "entry": [
                    {
                        "fullUrl": f"{setup.base_url}/fhir/Subscription/{s.id}",
                        "resource": _resource(services, s),
                        "search": {"mode": "match"},
                    }
                    for s in subs
                ],
            }
        )

    @router.get("/Subscription/{sub_id}")
    @access(Authenticated())
    async def read(request: Request, principal: Caller, sub_id: SubscriptionId) -> Response:
        """One of one's subscriptions (header values are not shown again)."""
        sub = await _owned(request, principal, sub_id, "r")
        return FhirJSON(_resource(_services(request), sub))

    @router.delete("/Subscription/{sub_id}", status_code=204, responses=DELETE_RESPONSES)
    @access(Authenticated())
    async def delete(request: Request, principal: Caller, sub_id: SubscriptionId) -> Response:
        """Delete one of one's subscriptions: nothing more is sent for it."""
        await _owned(request, principal, sub_id, "d")
        await run_in_threadpool(_services(request).store.delete, sub_id)
        return Response(status_code=204)

    @router.get("/Subscription/{sub_id}/$status")
    @access(Authenticated())
    async def status_of(request: Request, principal: Caller, sub_id: SubscriptionId) -> Response:
        """One subscription's status: why it is in error, how many events it has had."""
        sub = await _owned(request, principal, sub_id, "r")
        return FhirJSON(status_bundle([sub], setup.base_url))

    @router.get("/Subscription/{sub_id}/$events")
    @access(PatientData("vital-signs"))
    async def events(
        request: Request,
        principal: Caller,
        sub_id: SubscriptionId,
        decision: SubscriptionPatient,
        since: Annotated[str | None, Query(alias="eventsSinceNumber", max_length=20)] = None,
        until: Annotated[str | None, Query(alias="eventsUntilNumber", max_length=20)] = None,
        content: Annotated[str | None, Query(max_length=16)] = None,
    ) -> Response:
        """Events of one's subscription still kept (at most 100 an answer), as a
        ``query-event`` notification: how a client catches up on what it missed. The event
        numbers are strings, as the IG's operation defines them."""
        sub = await _owned(request, principal, sub_id, "r")
        if content is not None and content not in CONTENTS:
            raise _refused(
                400, "code-invalid", "bad-content", "content is empty, id-only or full-resource"
            )
        first, last = _event_number(since, 1), _event_number(until, MAX_EVENT_NUMBER)
        store = _services(request).store
        kept = await run_in_threadpool(store.events, sub_id, first - 1, MAX_EVENTS_PER_ANSWER, last)
        shown = [e for e in kept if all(decision.shows(c) for c in codes_of([e]))]
        bundle = notification_bundle(
            sub, "query-event", setup.base_url, _services(request).engine.now_ms(), shown,
            content=content,
        )  # fmt: skip
        return FhirJSON(bundle)

    @router.post("/Subscription/{sub_id}/$get-ws-binding-token")
    @router.get("/Subscription/{sub_id}/$get-ws-binding-token")
    @access(Authenticated())
    async def binding_token(
        request: Request, principal: Caller, sub_id: SubscriptionId
    ) -> Response:
        """A short-lived token that binds a websocket to this subscription."""
        sub = await _owned(request, principal, sub_id, "r")
        if sub.spec.channel != "websocket":
            raise _refused(
                400, "business-rule", "not-a-websocket", "this subscription is a rest-hook"
            )
        try:
            token, grant = _services(request).engine.tokens.issue(owner_key(principal), (sub.id,))
        except TooManyTokens as exc:
            raise _refused(
                503, "transient", "too-many-tokens", str(exc), {"Retry-After": "5"}
            ) from None
        return FhirJSON(
            binding_token_parameters(
                token, grant.expires_ms, grant.subscriptions, setup.websocket_url
            )
        )

    @websockets.websocket("/ws")
    @access(BindingToken())
    async def websocket(socket: WebSocket) -> None:
        """Notifications of the subscriptions a ``bind-with-token <token>`` message binds."""
        engine: SubscriptionEngine = socket.app.state.subscriptions.engine
        await socket.accept()
        with suppress(WebSocketDisconnect):
            await engine.serve_websocket(socket)

    return router, websockets
