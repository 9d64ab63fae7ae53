"""405 Method Not Allowed naming every method the resource takes in ``Allow`` (RFC 9110 §10.2.1).

Starlette answers a method that a path's route does not take with the methods of that one
route only, so a path served by two routes (``GET`` and ``POST /api/v1/me/consents``) would
advertise only the first. :func:`allow_every_method` asks each of the app's routes, as they
match (router prefixes and all), which methods it takes for the path. A mount's own 405
(the static files') keeps the ``Allow`` it gave.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def methods_of(request: Request) -> list[str]:
    """The methods some route of the app takes at the request's path."""
    routes = request.app.router.routes
    taken = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            taken.append(method)
    return taken


async def _answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    taken = methods_of(request) if exc.status_code == 405 else []
    if taken:  # none: a mount's own 405 (within the mount), whose Allow is its own
        exc = HTTPException(
            405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(taken)}
        )
    return await http_exception_handler(request, exc)


def allow_every_method(app: FastAPI) -> None:
    """Answer every 405 of ``app`` with the path's every method in ``Allow``."""
    app.add_exception_handler(HTTPException, _answer)
