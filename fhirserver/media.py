"""Content negotiation the FHIR way (http.html#mime-type): JSON only, said as FHIR says it.

A client names the format with ``_format`` (which wins) or ``Accept``. This server speaks
FHIR JSON: ``application/fhir+json``, ``application/json`` (and the DSTU2 spelling
``application/json+fhir``), ``json``, or any ``*/*``, optionally with ``fhirVersion=4.0``.
Anything else - XML, Turtle, another FHIR version - is refused with :class:`NotAcceptable`
(406 and an OperationOutcome, which is JSON all the same). Every answer is
``application/fhir+json; charset=utf-8``.
"""

from __future__ import annotations

FHIR_JSON = "application/fhir+json"
CONTENT_TYPE = "application/fhir+json; charset=utf-8"
JSON_TYPES = frozenset(
    {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
)
WILDCARDS = frozenset({"*/*", "application/*"})
FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})
MAX_HEADER = 1024


class NotAcceptable(Exception):
    """The client asked only for formats this server does not speak (406)."""


def _acceptable(media: str, *, wildcards: bool) -> bool:
    """Whether one media range (with its parameters) is FHIR JSON R4."""
    kind, *params = (part.strip() for part in media.split(";"))
    values = dict(p.partition("=")[::2] for p in params if p)
    if values.get("q", "").strip() in {"0", "0.0", "0.00", "0.000"}:
        return False
    version = values.get("fhirVersion", "").strip().strip('"')
    if version and version not in FHIR_VERSIONS:
        return False
    kind = kind.lower()
    return kind in JSON_TYPES or (wildcards and kind in WILDCARDS)


def negotiate(formats: list[str], accept: str | None) -> None:
    """Refuse unless the request may be answered in FHIR JSON: every ``_format`` given must
    be JSON (it overrides ``Accept``), else ``Accept`` must allow JSON."""
    if formats:
        refused = [f for f in formats if not _acceptable(f, wildcards=False)]
        if refused:
            raise NotAcceptable(f"_format {refused[0][:64]!r}: this server speaks FHIR JSON only")
        return
    if accept is None or not accept.strip():
        return
    if len(accept) > MAX_HEADER:
        raise NotAcceptable("the Accept header is too long")
    if not any(_acceptable(media, wildcards=True) for media in accept.split(",")):
        raise NotAcceptable(
            f"Accept {accept[:64]!r}: this server speaks {FHIR_JSON} (and application/json) only"
        )
