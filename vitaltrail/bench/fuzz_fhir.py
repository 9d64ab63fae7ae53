"""The FHIR API's decoders of outside text, for `vitaltrail bench fuzz`: a search's query
string (``fhirserver.search.parse_query``, with every parameter any route declares), a paging
cursor (``fhirserver.paging.Cursor.decode``, with the key and binding a server would check
it against) and an Observation id (``fhirserver.observations.parse_observation_id``)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhirserver.capability import DECLARED
from fhirserver.observations import ObservationIdError, parse_observation_id
from fhirserver.paging import Cursor, CursorError, binding
from fhirserver.search import Query, SearchError, parse_query
from vitaltrail.bench.fuzz_corpus import Target, text

ACCEPTED = frozenset().union(*(d.accepted for d in DECLARED))
KEY = b"fuzz cursor key, 32 bytes long.."
BOUND = binding("/Observation", parse_query([("patient", "p-17")], ACCEPTED))
QUERIES = (
    b"patient=p-17&code=http://loinc.org|8867-4,9279-1&date=ge2025-11-21&date=lt2025-11-22T10:"
    b"00:00.123%2B01:00&_sort=-date&_count=50",
    b"subject=Patient/p-17&category=vital-signs&date=2025-11&max=3&_format=json",
    b"target=Observation/e12-85354-9.1&start=2025&end=2025-12-31",
)
IDS = (b"e123-8867-4", b"e0-85354-9", b"e9-59408-5.12")


def _query(data: bytes) -> Query:
    return parse_query(parse_qsl(text(data), keep_blank_values=True), ACCEPTED)


def _cursor(data: bytes) -> Cursor:
    return Cursor.decode(text(data), KEY, BOUND)


def fhir_targets() -> list[Target]:
    cursors = tuple(
        Cursor(as_of, (1_763_700_000_000 + as_of, as_of - 1, code, repeat), BOUND)
        .encode(KEY)
        .encode()
        for as_of, code, repeat in ((10, "8867-4", 0), (7_000_000, "85354-9", 1))
    )
    return [
        Target("FHIR search", _query, (SearchError,), QUERIES, "text"),
        Target("paging cursor", _cursor, (CursorError,), cursors, "text"),
        Target(
            "observation id",
            lambda d: parse_observation_id(text(d)),
            (ObservationIdError,),
            IDS,
            "text",
        ),
    ]
