"""One error type at the boundary of every decoder of outside bytes.

A decoder (COSE message, reading, ledger entry, proof bundle, signed note ...) documents one
error type, and a caller catches that type and nothing else. Each decoder translates the
errors it expects from the libraries it calls (cbor2, json, base64) with a message of its
own; :func:`decoder` is the net under that: whatever else a hostile input provokes inside it
(a ``TypeError`` from an unhashable CBOR key, an ``OverflowError``, a ``RecursionError`` ...)
leaves as the documented type too, with :data:`BOUNDARY_NOTE` attached so the fuzzers can
count what only the net caught (each such case is a check to write where it happened).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

BOUNDARY_NOTE = "caught at the decoder boundary"


def decoder(error: type[Exception], what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make ``error`` the only exception the decorated function lets out (``MemoryError``
    aside: running out of memory is not a verdict on the input)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except (error, MemoryError):
                raise
            except Exception as exc:
                wrapped = error(f"{what} does not decode ({type(exc).__name__})")
                wrapped.add_note(BOUNDARY_NOTE)
                raise wrapped from exc

        return guarded

    return wrap


def caught_at_boundary(exc: BaseException) -> bool:
    """Whether ``exc`` is a decoder's error that only the net of :func:`decoder` caught."""
    return BOUNDARY_NOTE in getattr(exc, "__notes__", ())
