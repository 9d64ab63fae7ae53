"""Deny by default: every route of the app declares its access rule, and the rules hold.

The routes are enumerated from the app itself (included routers, mounts, the docs and the
OpenAPI document too), so a route added later without a rule fails here, and is refused at
run time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from dashboards.access_deps import GATES
from dashboards.app import create_app
from dashboards.auth_routes import PUBLIC_ROUTES
from dashboards.fhir_answers import OUTCOME_SCHEMA
from dashboards.fhir_gates import FHIR_GATES
from dashboards.route_rules import (
    Admin,
    Authenticated,
    BindingToken,
    PatientData,
    Public,
    access,
    every_route,
    rule_of,
    undeclared,
)
from fhirserver.capability import DECLARED
from tests.populated import populate
from vitaltrail.runtime import data_sources
from vitaltrail.settings import Settings

# The only routes anyone may call without a token: none carries patient data.
PUBLIC = (
    {"/", "/healthz", "/api/v1/checkpoint", "/static", "/docs", "/openapi.json"}
    | {path for _, path in PUBLIC_ROUTES}  # sign-in, the token endpoint, discovery
    | {"/me"}  # the patient's page itself; its data comes from authenticated routes
    | {"/fhir/metadata"}  # the CapabilityStatement
)
PATIENT_DATA = {
    "/api/v1/patients",
    "/api/v1/patients/{patient_id}/vitals",
    "/api/v1/patients/{patient_id}/vitals/{code}",
    "/api/v1/patients/{patient_id}/documented",
    "/api/v1/patients/{patient_id}/news2",
    "/api/v1/ward",
    "/api/v1/alerts",
    "/api/v1/alerts/stream",  # server-sent events: the same gate as /api/v1/alerts
    "/api/v1/patients/{patient_id}/alerts",
    "/api/v1/patients/{patient_id}/alerts/{alert_id}/acknowledge",
    "/api/v1/patients/{patient_id}/alerts/{alert_id}/snooze",
    "/api/v1/patients/{patient_id}/devices",
    "/api/v1/readings/{index}",
    "/api/v1/readings/{index}/proof",
    "/api/v1/me/access-log",
    "/api/v1/patients/{patient_id}/access-log",
    "/api/v1/patients/{patient_id}/access-log/fhir",
    "/fhir/Subscription/{sub_id}/$events",
} | {"/fhir" + d.path for d in DECLARED}
WEBSOCKETS = {"/fhir/ws"}  # bound by a token from $get-ws-binding-token (BindingToken)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return populate(tmp_path_factory.mktemp("rules") / "data", patients=1, readings=1)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[FastAPI]:
    app = create_app(data_sources(settings))
    with TestClient(app):
        yield app


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def test_every_route_declares_its_rule(app: FastAPI) -> None:
    assert undeclared(app) == []
    paths = {getattr(r, "path", "") for r in every_route(app.routes)}
    assert {"/docs", "/openapi.json", "/metrics", "/healthz", "/static"} <= paths


def test_public_routes_are_only_those_without_patient_data(app: FastAPI) -> None:
    rules = {getattr(r, "path", ""): rule_of(r, app) for r in every_route(app.routes)}
    public = {path for path, rule in rules.items() if isinstance(rule, Public)}
    assert public == PUBLIC
    assert isinstance(rules["/metrics"], Admin)
    assert {p for p, r in rules.items() if isinstance(r, PatientData)} == PATIENT_DATA
    assert {p for p, r in rules.items() if isinstance(r, BindingToken)} == WEBSOCKETS
    assert all(
        isinstance(r, Authenticated | Admin | PatientData | Public | BindingToken)
        for r in rules.values()
    )


def test_every_patient_data_route_takes_a_gate(app: FastAPI) -> None:
    """Its handler cannot run without the decision recorded first."""
    for route in every_route(app.routes):
        if isinstance(route, APIRoute) and isinstance(rule_of(route, app), PatientData):
            calls = {d.call for d in _walk(route.dependant)}
            assert calls & {*GATES, *FHIR_GATES}, route.path


def test_without_a_token_only_public_routes_answer(app: FastAPI) -> None:
    with TestClient(app) as client:
        for route in every_route(app.routes):
            if not isinstance(route, APIRoute):
                continue
            path = route.path.format(
                patient_id="patient-0", code="8867-4", index="1", height="0", sub_id="s1",
                observation_id="e1-8867-4", provenance_id="pe1-8867-4", device_id="patient-0-band",
                alert_id="0" * 32,
            )  # fmt: skip
            methods = route.methods or {"GET"}
            method = "GET" if "GET" in methods else sorted(methods)[0]
            response = client.request(method, path, params={"old": 1, "new": 1})
            if route.path == "/auth/session":  # public; its answer is "no session": 401
                assert "WWW-Authenticate" not in response.headers
            elif route.path in PUBLIC:
                assert response.status_code != 401, route.path
            else:
                assert response.status_code == 401, route.path
                assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_route_added_without_a_rule_is_refused_at_run_time(settings: Settings) -> None:
    extra = create_app(data_sources(settings))

    @extra.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"patient": "data"}

    @extra.get("/remembered")
    @access(Public())
    async def remembered() -> dict[str, str]:
        return {"status": "fine"}

    assert undeclared(extra) == ["/forgotten"]
    with TestClient(extra) as client:
        refused = client.get("/forgotten")
        assert refused.status_code == 403
        assert "declares no access rule" in refused.text
        assert client.get("/remembered").json() == {"status": "fine"}


def test_the_openapi_document_says_which_operations_need_a_token(app: FastAPI) -> None:
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    vitals = schema["paths"]["/api/v1/patients/{patient_id}/vitals"]["get"]
    assert vitals["security"] == [{"bearer": []}]
    assert vitals["x-vitaltrail-access"].startswith("patient data (vital-signs)")
    headers = {p["name"] for p in vitals["parameters"] if p["in"] == "header"}
    assert headers == {"X-Break-Glass-Reason", "X-Purpose-Of-Use"}
    checkpoint = schema["paths"]["/api/v1/checkpoint"]["get"]
    assert "security" not in checkpoint
    assert checkpoint["x-vitaltrail-access"] == "public"


def test_the_openapi_document_declares_the_refusals_of_each_rule(app: FastAPI) -> None:
    # The token check's 401, the read pool's 503 and the access policy's 403 come before any
    # handler; they were missing from the document (schemathesis: "undocumented status").
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorOut"]["required"] == ["detail"]
    checked = 0
    for route in every_route(app.routes):
        rule = rule_of(route, app)
        operations = schema["paths"].get(getattr(route, "path", ""), {})
        for method in getattr(route, "methods", None) or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue  # not in the document (/metrics, the pages)
            if isinstance(rule, Public):
                continue  # its answers are its own (the token endpoint's 401: invalid_client)
            statuses = set(operation["responses"])
            checked += 1
            assert {"401", "503"} <= statuses, route
            if isinstance(rule, PatientData):
                assert "403" in statuses, route
            if getattr(route, "path", "").startswith("/fhir/"):  # FHIR: OperationOutcome
                unauthenticated = operation["responses"]["401"]["content"]["application/fhir+json"]
                assert unauthenticated["schema"] == OUTCOME_SCHEMA
                continue
            unauthenticated = operation["responses"]["401"]["content"]["application/json"]
            assert unauthenticated["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert checked >= 15


def test_a_websocket_opens_only_where_it_declares_a_binding_token(settings: Settings) -> None:
    """A websocket cannot carry a bearer token; one that declares nothing else is closed
    before it is accepted, and an HTTP route cannot declare the websocket rule."""
    extra = create_app(data_sources(settings))

    @extra.websocket("/undeclared-ws")
    async def undeclared_ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("patient data")

    @extra.get("/http-with-ws-rule")
    @access(BindingToken())
    async def http_with_ws_rule() -> dict[str, str]:
        return {"patient": "data"}

    with TestClient(extra) as client:
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/undeclared-ws"),
        ):
            pass
        assert closed.value.code == 1008
        refused = client.get("/http-with-ws-rule")
        assert refused.status_code == 403
        assert "patient" not in refused.text
