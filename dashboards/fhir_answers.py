"""How the FHIR routes answer: ``application/fhir+json``, and an OperationOutcome for every
refusal - FHIR clients read errors as OperationOutcome, never as the rest of the API's JSON.

:class:`FhirRoute` (the FHIR router's route class) turns whatever a route or one of its
dependencies raises - :class:`FhirError`, a bad search (``fhirserver.search.SearchError``,
400), a foreign cursor (``fhirserver.paging.CursorError``, 400), an unacceptable format
(``fhirserver.media.NotAcceptable``, 406), FastAPI's own validation errors (422) and the
access layer's ``HTTPException`` (401 with ``WWW-Authenticate``, 403, 404, 503 with
``Retry-After``) - into an OperationOutcome with the same status and headers, its issue type
the one FHIR gives that status, and the project's reason code in ``details`` when there is one.
:func:`add_fhir_errors` does the same for what no route answers under ``/fhir`` (an unknown
resource type: 404; a method not allowed: 405).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from fhirserver.media import CONTENT_TYPE, FHIR_JSON, NotAcceptable
from fhirserver.outcome import operation_outcome
from fhirserver.paging import CursorError
from fhirserver.search import SearchError

log = logging.getLogger("vitaltrail.api.fhir")

FHIR_BASE = "/fhir"
ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    422: "invalid",
    503: "transient",
}
REFUSED_PREFIX = "access refused: "  # dashboards.access_deps.decide's detail, then the reason


OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {"type": "array", "items": {"type": "object"}, "minItems": 1},
    },
}
RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
_REFUSALS = {
    "400": "a search the server will not run (unknown parameter, bad value, foreign cursor)",
    "401": "no valid bearer token (WWW-Authenticate says why)",
    "403": "the access policy refused (the refusal is in the access trail)",
    "404": "no such resource",
    "406": "a format other than FHIR JSON was asked for (_format or Accept)",
    "422": "a path or header value of the wrong shape",
    "503": "the read pool is busy or the access trail cannot record (Retry-After)",
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a FHIR R4 resource (a Bundle for searches and operations)",
        "content": {FHIR_JSON: {"schema": RESOURCE_SCHEMA}},
    },
    **{
        status: {
            "description": description,
            "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}},
        }
        for status, description in _REFUSALS.items()
    },
}


class FhirJSON(JSONResponse):
    """A FHIR resource: ``application/fhir+json; charset=utf-8``."""

    media_type = CONTENT_TYPE


class FhirError(Exception):
    """A refusal with its status, FHIR issue type and (optionally) the reason code."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code or ISSUE_TYPE.get(status, "processing")
        self.diagnostics = diagnostics
        self.reason = reason
        self.headers = headers


def outcome(error: FhirError) -> FhirJSON:
    body = operation_outcome("error", error.code, error.diagnostics, reason=error.reason)
    return FhirJSON(body, error.status, headers=error.headers)


def as_fhir_error(exc: Exception) -> FhirError | None:
    """The FHIR refusal of an exception a route or dependency raised, or None (a bug)."""
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, SearchError):
        return FhirError(400, exc.diagnostics, code=exc.code, reason="bad-search")
    if isinstance(exc, CursorError):
        return FhirError(400, str(exc), reason="bad-cursor")
    if isinstance(exc, NotAcceptable):
        return FhirError(406, str(exc), reason="not-acceptable")
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return FhirError(422, problems[:1000] or "the request is not valid", reason="malformed")
    if isinstance(exc, HTTPException):
        detail = str(exc.detail)
        reason = detail.removeprefix(REFUSED_PREFIX) if detail.startswith(REFUSED_PREFIX) else None
        headers = dict(exc.headers) if exc.headers else None
        return FhirError(exc.status_code, detail, reason=reason, headers=headers)
    return None


class FhirRoute(APIRoute):
    """Answers every refusal raised in a FHIR handler or its dependencies as an outcome."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                error = as_fhir_error(exc)
                if error is None:
                    raise
                log.debug("FHIR request refused: %s %s", error.status, error.reason or error.code)
                return outcome(error)

        return handle


def add_fhir_errors(app: FastAPI) -> None:
    """Under ``/fhir``, what no route answers is an OperationOutcome too, with the status and
    headers (``Allow``) of the handler the app had; call it after the app's other handlers."""
    earlier = {
        kind: app.exception_handlers.get(kind, default)
        for kind, default in (
            (HTTPException, http_exception_handler),
            (RequestValidationError, request_validation_exception_handler),
        )
    }

    async def not_routed(request: Request, exc: Exception) -> Response:
        handler = earlier[
            RequestValidationError if isinstance(exc, RequestValidationError) else HTTPException
        ]
        answer = handler(request, exc)
        answered: Response = await answer if inspect.isawaitable(answer) else answer
        path = request.url.path
        error = as_fhir_error(exc)
        if error is None or not (path == FHIR_BASE or path.startswith(FHIR_BASE + "/")):
            return answered
        if "allow" in answered.headers:
            error.headers = {**(error.headers or {}), "Allow": answered.headers["allow"]}
        return outcome(error)

    app.add_exception_handler(HTTPException, not_routed)
    app.add_exception_handler(RequestValidationError, not_routed)
