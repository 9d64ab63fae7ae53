"""Refusals as JSON ``{"detail", "reason"}``, raised anywhere in a route and answered by its
route class, so handlers stay typed with their success models; and how every refusal is
documented in the OpenAPI schema (for readers, and for schemathesis's conformance checks).

A router made with ``route_class=RefusingRoute`` turns a :class:`Refused` raised in a handler or
in any of its dependencies into its answer; :data:`REFUSAL_RESPONSES` documents its statuses.
Refusals raised as FastAPI's ``HTTPException`` - the token check (401), a rule or the access
policy (403), not found, the read pool or the access trail (503) - answer ``{"detail"}``
(:class:`ErrorOut`), documented with :func:`error`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel


class Refused(Exception):
    """A refusal with its HTTP status and reason code."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


class RefusalOut(BaseModel):
    detail: str
    reason: str


class ErrorOut(BaseModel):
    """FastAPI's answer to an ``HTTPException``."""

    detail: str


class RefusingRoute(APIRoute):
    """Turns :class:`Refused`, raised in a handler or its dependencies, into its answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as exc:
                body = RefusalOut(detail=exc.detail, reason=exc.reason).model_dump()
                return JSONResponse(body, exc.status, headers=exc.headers)

        return handle


def invalid_body(reason: str, detail: str) -> RequestValidationError:
    """A body whose values a rule refuses: a 422 in FastAPI's shape, its ``type`` the reason
    code (so it is documented like any other 422)."""
    return RequestValidationError(
        [{"type": reason, "loc": ("body",), "msg": detail, "input": None}]
    )


def _refusal(description: str) -> dict[str, Any]:
    return {"model": RefusalOut, "description": description}


def error(description: str) -> dict[str, Any]:
    """An ``HTTPException`` answer's entry in a route's ``responses``."""
    return {"model": ErrorOut, "description": description}


UNAUTHENTICATED = "no valid bearer token or session (with WWW-Authenticate)"
BUSY = "the API is busy with other reads, or the access trail cannot record: nothing served"


def _either(description: str) -> dict[str, Any]:
    return {"model": RefusalOut | ErrorOut, "description": description}


REFUSAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _either("not a valid statement or key (reason: the code), or a body FastAPI cannot parse"),
    401: error(UNAUTHENTICATED),  # the token check, before the route's own rule
    403: _refusal("the caller's role, scopes or patient do not allow this"),
    409: _refusal("the patient's record already rules this out"),
    503: _either(
        "the access journal could not commit or be read (reason: the code), or the API is "
        "busy: nothing served"
    ),
}
