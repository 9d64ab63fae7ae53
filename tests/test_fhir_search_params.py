"""FHIR search parameters as R4 defines them, and paging cursors nobody else can make."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.boundary import caught_at_boundary
from fhirserver.capability import DECLARED, OBSERVATION_SEARCH, capability_statement
from fhirserver.media import NotAcceptable, negotiate
from fhirserver.paging import Cursor, CursorError, binding
from fhirserver.search import (
    KNOWN,
    MAX_COUNT,
    Query,
    SearchError,
    date_range,
    lenient,
    parse_query,
)

ACCEPTED = OBSERVATION_SEARCH.accepted
KEY = b"k" * 32
H = 3_600_000


def _parse(*items: tuple[str, str], soft: bool = False) -> Query:
    return parse_query(items, ACCEPTED, lenient=soft)


def _ms(text: str) -> int:
    return date_range(text)[0]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2025", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2025-02", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"),
        ("2025-12", "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2025-11-21", "2025-11-21T00:00:00Z", "2025-11-22T00:00:00Z"),
        ("2025-11-21T10:00Z", "2025-11-21T10:00:00Z", "2025-11-21T10:01:00Z"),
        ("2025-11-21T10:00:05+01:00", "2025-11-21T09:00:05Z", "2025-11-21T09:00:06Z"),
        ("2025-11-21T10:00:05.25Z", "2025-11-21T10:00:05.250Z", "2025-11-21T10:00:05.260Z"),
        ("2025-11-21T10:00:05.123Z", "2025-11-21T10:00:05.123Z", "2025-11-21T10:00:05.124Z"),
        ("2025-11-21T10:00:05.1234Z", "2025-11-21T10:00:05.123Z", "2025-11-21T10:00:05.124Z"),
        ("2025-11-21T10:00", "2025-11-21T10:00:00Z", "2025-11-21T10:01:00Z"),  # no zone: UTC
    ],
)
def test_a_date_is_the_range_of_its_precision(text: str, start: str, end: str) -> None:
    low, high = date_range(text)
    assert low == _instant_ms(start)
    assert high == _instant_ms(end)


def _instant_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_date_prefixes_and_repeats_make_one_range() -> None:
    day = date_range("2025-11-21")
    assert _parse(("date", "2025-11-21")).start_ms == day[0]
    assert _parse(("date", "eq2025-11-21")).end_ms == day[1]
    assert (_parse(("date", "ge2025-11-21")).start_ms, _parse(("date", "ge2025-11-21")).end_ms) == (
        day[0],
        None,
    )
    assert _parse(("date", "gt2025-11-21")).start_ms == day[1]  # after the whole day
    assert _parse(("date", "le2025-11-21")).end_ms == day[1]
    assert _parse(("date", "lt2025-11-21")).end_ms == day[0]
    both = _parse(("date", "ge2025-11-21T10:00Z"), ("date", "lt2025-11-21T12:00Z"))
    assert (both.start_ms, both.end_ms) == (day[0] + 10 * H, day[0] + 12 * H)
    narrower = _parse(("date", "ge2025-11-20"), ("date", "ge2025-11-21"), ("date", "le2025-11-30"))
    assert narrower.start_ms == day[0]
    empty = _parse(("date", "gt2025-11-21"), ("date", "lt2025-11-21"))
    assert empty.codes == frozenset()  # a range that is empty finds nothing


@pytest.mark.parametrize(
    "value",
    ["21-11-2025", "2025-13-01", "2025-02-30", "2025-11-21T25:00Z", "2025-11-21T10:00+15:00",
     "ap2025", "ne2025", "2025,2026", "0000", "2025-1-1", "٢٠٢٥", "2025-11-21T10Z"],
)  # fmt: skip
def test_a_date_that_is_not_one_is_a_400(value: str) -> None:
    with pytest.raises(SearchError) as refused:
        _parse(("date", value))
    assert not caught_at_boundary(refused.value)


def test_codes_are_tokens_or_ed_by_commas_and_anded_by_repeats() -> None:
    assert _parse(("code", "8867-4")).codes == frozenset({"8867-4"})
    assert _parse(("code", "http://loinc.org|8867-4")).codes == frozenset({"8867-4"})
    assert _parse(("code", "http://loinc.org|8867-4,http://loinc.org|9279-1")).codes == frozenset(
        {"8867-4", "9279-1"}
    )
    assert _parse(("code", "http://loinc.org|2708-6")).codes == frozenset({"59408-5"})  # SpO2
    assert _parse(("code", "85354-9")).codes == frozenset({"85354-9"})  # the BP panel
    assert _parse(("code", "8480-6")).codes == frozenset()  # a component is no Observation
    assert _parse(("category", "vital-signs")).codes == frozenset(
        {"8867-4", "59408-5", "9279-1", "8310-5", "85354-9"}
    )  # glucose is laboratory
    assert _parse(("category", "laboratory"), ("code", "2339-0,8867-4")).codes == frozenset(
        {"2339-0"}
    )
    assert _parse(("code", "http://snomed.info/sct|364075005")).codes == frozenset()
    assert _parse(("code", "|8867-4")).codes == frozenset()  # no system: none of ours
    assert _parse(("code", "pulse")).codes == frozenset()  # not a LOINC code: none of ours
    assert _parse(("code", "http://loinc.org|")).codes is None  # any LOINC code
    assert _parse(("code", "8867-4,9279-1"), ("code", "9279-1")).codes == frozenset({"9279-1"})
    assert _parse(("code", "8867-4"), ("code", "9279-1")).codes == frozenset()


def test_patients_are_references_and_anything_else_finds_no_one() -> None:
    assert _parse(("patient", "p-1")).patients == ("p-1",)
    assert _parse(("patient", "Patient/p-1,p-2")).patients == ("p-1", "p-2")
    assert _parse(("subject", "https://x.example/fhir/Patient/p-1")).patients == ("p-1",)
    assert _parse(("subject", "Group/ward-3")).patients == ()
    assert _parse(("patient", "p-1,p-2"), ("subject", "Patient/p-2")).patients == ("p-2",)
    assert _parse().patients is None
    with pytest.raises(SearchError):
        _parse(("patient", "p 1"))
    with pytest.raises(SearchError):
        _parse(("patient", ",".join(f"p-{i}" for i in range(65))))


def test_sort_count_and_unknown_parameters() -> None:
    assert _parse(("_sort", "-date")).descending
    assert not _parse(("_sort", "date")).descending
    assert _parse(("_count", "7")).count == 7
    assert _parse().count == 100
    for bad in [("_sort", "code"), ("_count", "0"), ("_count", str(MAX_COUNT + 1)),
                ("_count", "²"), ("_count", "-1"), ("_elements", "id"), ("code:text", "pulse"),
                ("max", "2")]:  # fmt: skip
        with pytest.raises(SearchError):
            _parse(bad)
    with pytest.raises(SearchError) as unknown:
        _parse(("_include", "Observation:patient"))
    assert unknown.value.code == "not-supported"


def test_lenient_handling_leaves_out_what_it_cannot_use_and_says_so() -> None:
    assert lenient("handling=lenient")
    assert lenient("return=minimal, handling=lenient")
    assert not lenient("handling=strict")
    assert not lenient(None)
    query = _parse(("_elements", "id"), ("code", "8867-4"), ("_count", "0"), soft=True)
    assert query.codes == frozenset({"8867-4"})
    assert query.count == 100
    assert query.used == (("code", "8867-4"),)  # what the self link shows


def test_every_declared_parameter_is_parsed_and_the_statement_lists_them() -> None:
    assert all(d.accepted <= KNOWN for d in DECLARED)
    statement = capability_statement("https://x.example/fhir", "https://x.example/auth/token", "1")
    (rest,) = statement["rest"]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert {p["name"] for p in observation["searchParam"]} == {
        "patient", "subject", "code", "category", "date",
    }  # fmt: skip
    assert {i["code"] for i in observation["interaction"]} == {"read", "search-type"}
    assert observation["operation"] == [
        {"name": "lastn", "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"}
    ]
    (oauth,) = rest["security"]["extension"]
    assert oauth["extension"] == [{"url": "token", "valueUri": "https://x.example/auth/token"}]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert statement["fhirVersion"] == "4.0.1"


@pytest.mark.parametrize(
    ("formats", "accept"),
    [([], None), ([], "application/fhir+json"), ([], "application/json"), ([], "*/*"),
     ([], "text/html, application/fhir+json;q=0.9"), (["json"], "application/xml"),
     (["application/fhir+json"], None), ([], "application/fhir+json; fhirVersion=4.0")],
)  # fmt: skip
def test_json_is_served(formats: list[str], accept: str | None) -> None:
    negotiate(formats, accept)


@pytest.mark.parametrize(
    ("formats", "accept"),
    [(["xml"], None), (["application/fhir+xml"], "application/fhir+json"), (["ttl"], None),
     ([], "application/fhir+xml"), ([], "text/html"), ([], "application/fhir+json;q=0"),
     ([], "application/fhir+json; fhirVersion=3.0")],
)  # fmt: skip
def test_anything_but_json_is_not_acceptable(formats: list[str], accept: str | None) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(formats, accept)


BOUND = binding("/Observation", _parse(("patient", "p-1")))


def test_a_cursor_round_trips_and_is_bound_to_its_search() -> None:
    cursor = Cursor(1234, (_ms("2025-11-21"), 99, "8867-4", 1), BOUND)
    text = cursor.encode(KEY)
    assert Cursor.decode(text, KEY, BOUND) == cursor
    other_patient = binding("/Observation", _parse(("patient", "p-2")))
    with pytest.raises(CursorError, match="another search"):
        Cursor.decode(text, KEY, other_patient)
    with pytest.raises(CursorError, match="another search"):
        Cursor.decode(text, KEY, binding("/Patient/{patient_id}/$everything", _parse()))
    with pytest.raises(CursorError, match="not one this server issued"):
        Cursor.decode(text, b"another key" * 3, BOUND)
    # The page size may change between pages; the search may not.
    assert binding("/Observation", _parse(("patient", "p-1"), ("_count", "5"))) == BOUND


cursors = st.builds(
    Cursor,
    st.integers(0, 2**64 - 1),
    st.tuples(
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.from_regex(r"[0-9]{1,7}-[0-9]", fullmatch=True),
        st.integers(0, 255),
    ),
    st.just(BOUND),
)


@settings(max_examples=300, deadline=None)
@given(cursors, st.data())
def test_a_changed_cursor_is_refused_with_the_one_error(
    cursor: Cursor, data: st.DataObject
) -> None:
    text = cursor.encode(KEY)
    assert Cursor.decode(text, KEY, BOUND) == cursor
    i = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from("AQgw_-9z"))
    changed = text[:i] + replacement + text[i + 1 :]
    if changed == text:
        return
    with pytest.raises(CursorError):
        Cursor.decode(changed, KEY, BOUND)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=120).map(lambda b: b.hex()))
def test_any_text_as_a_cursor_is_refused_with_the_one_error(text: str) -> None:
    with pytest.raises(CursorError) as refused:
        Cursor.decode(text, KEY, BOUND)
    assert not caught_at_boundary(refused.value)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([*sorted(KNOWN), "x"]), st.text(max_size=40)), max_size=6)
)
def test_any_query_parses_or_is_refused_with_the_one_error(items: list[tuple[str, str]]) -> None:
    accepted = ACCEPTED | {"target", "start", "end", "max"}
    parse_query(items, accepted, lenient=True)  # lenient: whatever it cannot use is left out
    refused: SearchError | None = None
    try:
        parse_query(items, accepted)
    except SearchError as exc:
        refused = exc
    assert refused is None or not caught_at_boundary(refused)
