"""Every number the API takes is bounded: hostile values get a 4xx that says why, never a 5xx.

The routes are enumerated from the app itself, so a route added later with a parameter this
table does not know fails here until its hostile values are tried too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount

from dashboards.access_deps import BREAK_GLASS_HEADER, PURPOSE_HEADER
from dashboards.alert_stream import STREAM
from dashboards.app import create_app
from fhirserver.capability import DECLARED
from tests.api_access import ward_headers
from tests.populated import populate
from tests.stack import now_ms
from tests.subscription_docs import subscription_doc
from vitaltrail.runtime import data_sources

# A valid value of every parameter a route may take: the baseline each hostile value replaces.
VALID = {
    "patient_id": "patient-1",
    "code": "8867-4",
    "index": "3",
    "height": "0",
    "old": "1",
    "new": "2",
    "start_ms": str(now_ms() - 3_600_000),
    "end_ms": str(now_ms()),
    "bucket_s": "60",
    "alert_id": "0" * 32,  # no such alert: 404 after the gate
    "format": "json",  # /api/v1/me/consents?format=fhir
    "window": "1h",  # /api/v1/patients/{id}/news2/history
    # FHIR (their search parameters: tests/test_fhir_search_params.py)
    "observation_id": "e4-8867-4",
    "provenance_id": "pe4-8867-4",
    "device_id": "patient-1-band",
    # FHIR subscriptions: the ward clinician's own (made by the fixture), $events' range (the
    # IG's event numbers are strings: refused as 400 OperationOutcome, tested there)
    "sub_id": "set-by-the-fixture",
    "status": "active",
    "eventsSinceNumber": "1",
    "eventsUntilNumber": "2",
    "content": "id-only",
}
NEEDS_A_QUERY = {"/fhir" + d.path for d in DECLARED if d.required}
OUT_OF_RANGE = [str(2**63), str(2**64), "-1", str(-(2**63))]
HUGE = ["9" * 10_000, "x" * 10_000, "1" + "0" * 5000, "1e309", "nan", "-inf", "", "%00"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient]]:
    settings = populate(tmp_path_factory.mktemp("bounds") / "data", patients=3, readings=5)
    app = create_app(data_sources(settings))
    headers = ward_headers(settings, ["patient-0", "patient-1", "patient-2"])
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        doc = subscription_doc("patient-1", base=settings.base_url, channel="websocket")
        created = client.post(
            "/fhir/Subscription", json=doc, headers={"Content-Type": "application/fhir+json"}
        )
        assert created.status_code == 201, created.text
        VALID["sub_id"] = created.json()["id"]
        yield app, client


def _is_int(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_int(a) for a in get_args(annotation) if a is not NoneType)
    return annotation is int


def parameters(app: FastAPI) -> list[tuple[APIRoute, str, str, bool]]:
    """(route, parameter, 'path' or 'query', is an integer) for every route of the app."""
    found = []
    for route in _routes(app.routes):
        if route.path == STREAM:
            continue  # endless when it is let in: its bounds are tests/test_alert_stream*.py's
        for dependant in _walk(route.dependant):
            # the access headers only (their bounds: tests/test_api_access_matrix.py)
            headers = {field.alias for field in dependant.header_params}
            assert headers <= {BREAK_GLASS_HEADER, PURPOSE_HEADER}, route.path
            assert not dependant.cookie_params, route.path
            for kind, params in (
                ("path", dependant.path_params),
                ("query", dependant.query_params),
            ):
                for field in params:
                    found.append((route, field.alias, kind, _is_int(field.field_info.annotation)))
    return found


def _routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _routes(included.routes)  # FastAPI 0.16x includes a router as one route
        elif not isinstance(route, Mount):
            path = getattr(route, "path", "")
            assert "{" not in path, f"{path}: a route whose parameters are not declared"


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def request_url(route: APIRoute, values: dict[str, str], kinds: dict[str, str]) -> str:
    path = route.path
    query = []
    for name, value in values.items():
        if kinds[name] == "path":
            path = path.replace("{" + name + "}", value)
        else:
            query.append((name, value))
    if query:
        path += "?" + urlencode(query)
    return path


def test_the_table_knows_every_parameter(app_client: tuple[FastAPI, TestClient]) -> None:
    app, client = app_client
    found = parameters(app)
    assert {name for _, name, _, _ in found} <= set(VALID)
    integers = {name for _, name, _, is_int in found if is_int}
    assert integers == {"index", "height", "old", "new", "start_ms", "end_ms"}
    for route in {route.path: route for route, *_ in found}.values():  # baselines reach handlers
        if "GET" not in (route.methods or set()):
            continue  # a POST's body, not its parameters, is what it takes (its own tests)
        kinds = {name: kind for r, name, kind, _ in found if r is route}
        response = client.get(request_url(route, {n: VALID[n] for n in kinds}, kinds))
        # a clinician's token does not delegate AuditEvent: a patient's access log is theirs;
        # nor is a patient's own consent record (/me/...) a clinician's
        theirs = "access-log" in route.path or route.path.startswith("/api/v1/me/")
        allowed = (403,) if theirs else (200, 404, 409)
        if route.path in NEEDS_A_QUERY:  # FHIR searches that name their patient or target
            allowed = (400,)
        assert response.status_code in allowed, (route.path, response.text)


def test_no_hostile_value_of_any_parameter_gets_a_5xx(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    app, client = app_client
    found = parameters(app)
    failures: list[str] = []
    for route, name, _, is_int in found:
        kinds = {n: k for r, n, k, _ in found if r.path == route.path}
        for value in OUT_OF_RANGE + HUGE:
            values = {n: VALID[n] for n in kinds} | {name: value}
            response = client.get(request_url(route, values, kinds))
            where = f"{route.path} {name}={value[:20]}: {response.status_code}"
            if response.status_code >= 500:
                failures.append(where)
            elif is_int and value in OUT_OF_RANGE and not _names_the_bound(response.json(), name):
                failures.append(f"{where} {response.text[:200]}")
    for route in {route.path: route for route, *_ in found}.values():
        # Ranges whose ends are both hostile but in order: start_ms=2^63-1&end_ms=2^63 ...
        kinds = {n: k for r, n, k, _ in found if r.path == route.path}
        ints = [n for r, n, _, is_int in found if r.path == route.path and is_int]
        if not ints:
            continue
        for bound in (int(v) for v in OUT_OF_RANGE):
            values = {n: VALID[n] for n in kinds} | {
                n: str(bound - len(ints) + 1 + i) for i, n in enumerate(ints)
            }
            response = client.get(request_url(route, values, kinds))
            if response.status_code != 422:
                failures.append(f"{route.path} {values}: {response.status_code}")
    assert not failures, failures
    assert len(found) * len(OUT_OF_RANGE + HUGE) > 100


def _names_the_bound(body: Any, name: str) -> bool:
    """A 422 whose one error is about ``name`` and says which bound it broke."""
    detail = body.get("detail")
    if not isinstance(detail, list):
        return False
    # a parameter both a gate and its handler take is reported once by each: the same error
    distinct = {(tuple(e["loc"]), e["msg"]): e for e in detail}
    if len(distinct) != 1:
        return False
    (error,) = distinct.values()
    return bool(error["loc"][-1] == name and "than or equal to" in error["msg"])


def test_every_integer_bound_the_document_states_is_exact(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    # FastAPI writes a body model's bounds as doubles, so a bound past 2^53 may read as another
    # number: the consent statement's seq, up to 2^63 - 1, was documented as up to 2^63.
    _, client = app_client
    bounds = list(_integer_bounds(client.get("/openapi.json").json(), "#"))
    assert len(bounds) >= 10
    assert any(isinstance(value, float) for _, value in bounds)  # the body models' are here
    inexact = [
        (where, value) for where, value in bounds if isinstance(value, float) and abs(value) > 2**53
    ]
    assert not inexact


def _integer_bounds(node: Any, where: str) -> Iterator[tuple[str, float]]:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if key in node:
                    yield f"{where}/{key}", node[key]
        for key, value in node.items():
            yield from _integer_bounds(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integer_bounds(value, f"{where}/{i}")
