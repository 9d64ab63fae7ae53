"""Every route declares who may call it; a route that declares nothing is refused.

A rule is data, attached to the route where it is written::

    @router.get("/api/v1/patients/{patient_id}/vitals")
    @access(PatientData("vital-signs"))
    async def latest_vitals(...): ...

``Public`` carries no patient data and needs no token (health, the signed checkpoint, static
assets, the docs, discovery, sign-in). ``Authenticated`` needs a valid token (and the scopes it
names). ``Admin`` needs an administrator (``/metrics`` also takes the scrape token, if one is
configured). ``PatientData`` needs a token and a permit from the access policy, recorded in
the access trail before anything is served: its handler takes one of the gates of
``dashboards.access_deps`` (``PathPatient``, ``ReadingPatient``, ``VisiblePatients``,
``OwnRecord``, ``SubscriptionPatient``), and ``tests/test_route_rules.py`` holds every such
route to that. ``BindingToken`` is the websocket of FHIR subscriptions: bound by a token its
caller got over REST, every notification decided and recorded before it is sent.

Routes added by code that is not ours (``/openapi.json``, the docs page, mounted static files)
are declared by path with :func:`declare_path`. The one dependency that enforces the rules is
``dashboards.access_deps.enforce``, installed on the whole app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.routing import BaseRoute

from access.policy import DataClass
from dashboards.refusals import BUSY, UNAUTHENTICATED, ErrorOut

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__vitaltrail_access__"


@dataclass(frozen=True)
class Public:
    """No token; no patient data."""


@dataclass(frozen=True)
class Authenticated:
    """Any valid token whose scopes cover every one of ``scopes`` (SMART scope strings)."""

    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Admin:
    """An administrator's token; with ``scrape_token``, also the configured metrics token."""

    scrape_token: bool = False


@dataclass(frozen=True)
class PatientData:
    """Patient data of ``data_class``: decided by the access policy, recorded, then served."""

    data_class: DataClass


@dataclass(frozen=True)
class BindingToken:
    """A websocket: a browser cannot send ``Authorization`` on one, so the socket is opened
    without a token and its first message must bind it with a short-lived token that an
    authenticated caller got over REST (FHIR ``$get-ws-binding-token``). Whatever patient
    data it then carries is decided for that caller and recorded before it is sent. Only
    websocket routes may declare it; a websocket route may declare nothing else."""


AccessRule = Public | Authenticated | Admin | PatientData | BindingToken


def access(rule: AccessRule) -> Callable[[F], F]:
    """Declare the access rule of the route whose endpoint this decorates."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, rule)
        return endpoint

    return mark


def declare_path(app: FastAPI, path: str, rule: AccessRule) -> None:
    """Declare the rule of a route (or mount) that was added by code we do not decorate."""
    if not hasattr(app.state, "route_rules"):
        app.state.route_rules = {}
    app.state.route_rules[path] = rule


def _path_rules(app: Any) -> dict[str, AccessRule]:
    state = getattr(app, "state", None)
    if state is None:
        return {}
    rules: dict[str, AccessRule] = getattr(state, "route_rules", {})
    return rules


def rule_of(route: BaseRoute | None, app: Any) -> AccessRule | None:
    """The rule a route declares, or None (then it is refused)."""
    if route is None:
        return None
    endpoint = getattr(route, "endpoint", None)
    declared = getattr(endpoint, _ATTRIBUTE, None) if endpoint is not None else None
    if declared is not None:
        rule: AccessRule = declared
        return rule
    return _path_rules(app).get(getattr(route, "path", ""))


def every_route(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of an app, those of included routers too; a mount as one route."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI 0.16x includes a router as one route
            yield from every_route(included.routes)
        else:
            yield route


def undeclared(app: FastAPI) -> list[str]:
    """The paths of the routes and mounts of ``app`` that declare no rule."""
    return [
        getattr(route, "path", repr(route))
        for route in every_route(app.routes)
        if rule_of(route, app) is None
    ]


def describe(rule: AccessRule) -> str:
    """The rule in words, as the OpenAPI document shows it."""
    if isinstance(rule, Authenticated):
        return "a valid token" + (f" with {', '.join(rule.scopes)}" if rule.scopes else "")
    if isinstance(rule, Admin):
        return "an administrator" + (" (or the metrics scrape token)" if rule.scrape_token else "")
    if isinstance(rule, PatientData):
        return f"patient data ({rule.data_class}): decided by the access policy and recorded"
    if isinstance(rule, BindingToken):
        return "a websocket bound by a token from $get-ws-binding-token"
    return "public"


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "An RFC 9068 access token of the embedded issuer or the configured one",
}


def refusals(rule: AccessRule) -> dict[str, str]:
    """The refusals a rule's check may answer before the handler runs, by status: the token
    check's, a busy read pool's, and the rule's own 403 (or the access policy's)."""
    if isinstance(rule, Public | BindingToken):
        return {}
    answers = {"401": UNAUTHENTICATED, "503": BUSY}
    if isinstance(rule, PatientData):
        answers["403"] = "the access policy refused (the refusal is in the access trail)"
    elif isinstance(rule, Admin) or rule.scopes:
        answers["403"] = "the token's role or scopes do not reach this route"
    return answers


def _error_response(description: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ErrorOut.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document_rules(app: FastAPI) -> None:
    """Say in the OpenAPI document which operations need a bearer token, and their rule and
    the refusals it may answer, so a client (or a schema-driven tester) knows what to send
    and what may come back."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {})
        if "bearer" in components.get("securitySchemes", {}):
            return schema  # this generation is documented already
        components.setdefault("securitySchemes", {})["bearer"] = BEARER
        components.setdefault("schemas", {}).setdefault(
            ErrorOut.__name__, ErrorOut.model_json_schema()
        )
        for route in every_route(app.routes):
            rule = rule_of(route, app)
            operations = schema.get("paths", {}).get(getattr(route, "path_format", ""), {})
            for method in getattr(route, "methods", None) or ():
                operation = operations.get(method.lower())
                if operation is None or rule is None:
                    continue
                operation["x-vitaltrail-access"] = describe(rule)
                if not isinstance(rule, Public):
                    operation["security"] = [{"bearer": []}]
                responses = operation.setdefault("responses", {})
                for status, description in refusals(rule).items():
                    responses.setdefault(status, _error_response(description))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
