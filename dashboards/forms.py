"""Form bodies (``application/x-www-form-urlencoded``) read within bounds.

The token endpoint (RFC 6749 §4.4.2) and the sign-in page post forms. Starlette parses them
only with python-multipart installed; these forms are small and flat, so they are read here:
at most ``MAX_FORM_BYTES`` (a client assertion is at most 8 KiB), at most ``MAX_FIELDS``
fields, UTF-8, and no field given twice (RFC 6749 §3.2: "Request and response parameters MUST
NOT be included more than once"). A field with an empty value counts as absent (§3.1).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16_384
MAX_FIELDS = 16


class FormError(ValueError):
    """A body that is not a small, well-formed form; ``reason`` is a stable code."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


def is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == FORM_TYPE


def parse_form(body: bytes) -> dict[str, str]:
    """The fields of a form body; ``FormError`` if it is too big, malformed or repetitive."""
    if len(body) > MAX_FORM_BYTES:
        raise FormError("too_large", f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("ascii")  # a form body is percent-encoded
        pairs = parse_qsl(text, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:  # UnicodeDecodeError included; too many fields
        raise FormError("malformed", "the body is not a form of UTF-8 fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise FormError("repeated", f"the field {name[:40]!r} is given more than once")
        fields[name] = value
    return fields


async def read_form(request: Request) -> dict[str, str]:
    """The request's form fields, read within the bounds above."""
    if not is_form(request.headers.get("content-type")):
        raise FormError("not_form", f"the body must be {FORM_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise FormError("too_large", f"a form is at most {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("too_large", f"a form is at most {MAX_FORM_BYTES} bytes")
    return parse_form(bytes(body))
