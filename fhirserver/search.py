"""FHIR search parameters, read the way FHIR R4 defines them (http.html#search, search.html).

:func:`parse_query` turns a request's query items into a :class:`Query`, accepting only the
parameters the interaction declares (``fhirserver.capability``) plus ``_format``:

``patient``, ``subject``  a reference: ``p-17``, ``Patient/p-17`` or an absolute URL ending
                          in ``Patient/p-17``; commas mean OR, a repeated parameter AND
``code``, ``category``    a token ``system|code``, ``code`` (any system), ``|code`` (no system)
                          or ``system|`` (any code of the system); commas OR, repeats AND
``date``                  ``[eq|ge|gt|le|lt]`` and a date or time from year to milliseconds
                          precision (``2025``, ``2025-11``, ``2025-11-21``,
                          ``2025-11-21T10:00Z``, ``...T10:00:00.123+01:00``); a time without a
                          zone is UTC. Repeats AND (``date=ge..&date=lt..``): the ranges meet
``target``                a reference ``Observation/<id>`` (Provenance)
``_sort``                 ``date`` (oldest first, the default) or ``-date``
``_count``                page size, 1 to 1000 (default 100); ``max`` ($lastn) 1 to 100
``start``, ``end``        ($everything) dates: from the start of one, to the end of the other
``_cursor``               the opaque position of a ``next`` link (``fhirserver.paging``)

An unknown parameter, or a known one with a value it cannot have, is a :class:`SearchError`
(400 OperationOutcome) - unless the client sent ``Prefer: handling=lenient``: then unknown
parameters and unreadable values are left out, as the Bundle's ``self`` link then shows.
Each value is matched exactly as FHIR's token, reference and date rules say; a value that can
match nothing (another system, ``Group/x``) is no error, it finds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from access.fields import is_patient_id
from devices.boundary import decoder
from fhirserver.vital_signs import (
    CATEGORY_SYSTEM,
    KINDS,
    LOINC,
    observation_code,
    sample_codes_matching,
)

DEFAULT_COUNT, MAX_COUNT = 100, 1000
DEFAULT_LASTN, MAX_LASTN = 1, 100
MAX_VALUES = 64  # patients, codes or targets one parameter may name
MAX_CURSOR_CHARS = 256
PREFIXES = ("eq", "ge", "gt", "le", "lt")
SORTS = {"date": False, "-date": True}  # value -> descending
FORMAT = "_format"
CURSOR = "_cursor"

_DATE = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = re.compile(r"[0-9]{1,9}")
_LOINC_CODE = re.compile(r"[0-9]{1,7}-[0-9]")


class SearchError(Exception):
    """A query the server will not run: 400, with a FHIR issue code and what is wrong."""

    def __init__(self, diagnostics: str, code: str = "invalid") -> None:
        super().__init__(diagnostics)
        self.code = code  # FHIR issue-type: invalid, not-supported, value ...
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Query:
    """A parsed query. ``None``: the parameter was not given (no restriction)."""

    patients: tuple[str, ...] | None = None  # sorted; () when the AND of them is empty
    codes: frozenset[str] | None = None  # Observation codes (the index's) to match
    start_ms: int | None = None  # effective time >= start
    end_ms: int | None = None  # effective time < end
    targets: tuple[str, ...] | None = None  # Observation ids (Provenance?target=)
    descending: bool = False
    count: int = DEFAULT_COUNT
    max_per_code: int = DEFAULT_LASTN
    cursor: str | None = None
    used: tuple[tuple[str, str], ...] = field(default=())  # the items applied, for links

    def binding(self) -> str:
        """What the results depend on, canonically: a cursor is bound to it (page size and
        format aside, which a client may change between pages)."""
        codes = sorted(self.codes) if self.codes is not None else None
        return repr((self.patients, codes, self.start_ms, self.end_ms, self.targets,
                     self.descending, self.max_per_code))  # fmt: skip


def lenient(prefer: str | None) -> bool:
    """Whether the ``Prefer`` header asks for lenient handling (RFC 7240; FHIR http.html)."""
    if not prefer:
        return False
    tokens = (t.strip().lower().replace(" ", "") for t in re.split(r"[,;]", prefer))
    return "handling=lenient" in tokens


@decoder(SearchError, "the search")
def parse_query(
    items: Iterable[tuple[str, str]], accepted: Iterable[str], *, lenient: bool = False
) -> Query:
    """The query of ``items`` (name, value), of which ``accepted`` names may be used."""
    allowed = {*accepted, FORMAT}
    state = _State()
    used: list[tuple[str, str]] = []
    for name, value in items:
        parse = _PARSERS.get(name) if name in allowed else None
        if parse is None:
            if lenient:
                continue
            raise SearchError(f"the parameter {name!r} is not supported here", "not-supported")
        try:
            parse(state, value)
        except SearchError:
            if lenient:
                continue
            raise
        if name != CURSOR:
            used.append((name, value))
    return state.query(tuple(used))


@dataclass
class _State:
    patients: set[str] | None = None
    codes: set[str] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    targets: set[str] | None = None
    descending: bool = False
    count: int = DEFAULT_COUNT
    max_per_code: int = DEFAULT_LASTN
    cursor: str | None = None

    def query(self, used: tuple[tuple[str, str], ...]) -> Query:
        start, end = self.start_ms, self.end_ms
        empty = start is not None and end is not None and start >= end
        return Query(
            patients=None if self.patients is None else tuple(sorted(self.patients)),
            codes=frozenset() if empty else _frozen(self.codes),
            start_ms=start,
            end_ms=end,
            targets=None if self.targets is None else tuple(sorted(self.targets)),
            descending=self.descending,
            count=self.count,
            max_per_code=self.max_per_code,
            cursor=self.cursor,
            used=used,
        )


def _frozen(values: set[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _and(current: set[str] | None, values: set[str]) -> set[str]:
    """A repeated parameter means AND: what both allow."""
    return values if current is None else current & values


def _split(value: str, what: str) -> list[str]:
    """A value's comma-separated alternatives (OR)."""
    parts = value.split(",")
    if len(parts) > MAX_VALUES:
        raise SearchError(f"at most {MAX_VALUES} {what} in one parameter")
    if any(not p for p in parts):
        raise SearchError(f"an empty {what} in {value!r}")
    return parts


def _patient_reference(text: str) -> str | None:
    """The patient a reference names, or None for a reference to something else."""
    kind, slash, rest = text.rpartition("/")
    if slash:
        before = kind.rpartition("/")[2]
        if before != "Patient":
            return None
        text = rest
    if not is_patient_id(text):
        raise SearchError(f"{text!r} is not a patient id", "value")
    return text


def _patient(state: _State, value: str) -> None:
    named = {p for v in _split(value, "patients") if (p := _patient_reference(v)) is not None}
    state.patients = _and(state.patients, named)


def _target(state: _State, value: str) -> None:
    named: set[str] = set()
    for v in _split(value, "targets"):
        kind, _, rest = v.rpartition("/")
        if kind.rpartition("/")[2] != "Observation" or not rest:
            continue  # a Provenance of anything else: none here
        if len(rest) > 64:
            raise SearchError(f"{rest!r} is not an Observation id", "value")
        named.add(rest)
    state.targets = _and(state.targets, named)


def _codes_of(system: str | None, code: str | None) -> set[str] | None:
    """The Observation codes a token matches (None: every code). Every Observation here is
    coded in LOINC (``fhirserver.vital_signs``): SpO2 as 2708-6 and 59408-5, blood pressure as
    the 85354-9 panel (its components' codes are not the Observation's)."""
    if system == "":
        return set()  # |code: a code without a system, and all of ours have one
    if code is None:
        return None if system == LOINC else set()  # system|: any code of that system
    if system not in (None, LOINC) or _LOINC_CODE.fullmatch(code) is None:
        return set()  # not a LOINC code: no Observation here has it
    return {observation_code(c) for c in sample_codes_matching(code)}


def _token(text: str) -> tuple[str | None, str | None]:
    """``(system, code)`` of a token: system None for any, code None for any."""
    if "|" not in text:
        return None, text
    system, _, code = text.partition("|")
    return system, code or None


def _code(state: _State, value: str) -> None:
    matched: set[str] | None = set()
    for part in _split(value, "codes"):
        found = _codes_of(*_token(part))
        if found is None or matched is None:
            matched = None
        else:
            matched |= found
    if matched is not None:
        state.codes = _and(state.codes, matched)


def _category(state: _State, value: str) -> None:
    wanted: set[str] = set()
    for part in _split(value, "categories"):
        system, code = _token(part)
        if system in (None, CATEGORY_SYSTEM) and code is not None:
            wanted.add(code)
    state.codes = _and(state.codes, {k.code for k in KINDS if k.category in wanted})


def date_range(text: str) -> tuple[int, int]:
    """``[start, end)`` in milliseconds of a FHIR date, dateTime or instant, at its precision."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise SearchError(f"{text!r} is not a date like 2025-11-21 or 2025-11-21T10:00:00Z")
    g = m.groupdict()
    try:
        year = int(g["year"])
        start = datetime(year, int(g["month"] or 1), int(g["day"] or 1), tzinfo=UTC)
        if g["hour"] is not None:
            start = start.replace(hour=int(g["hour"]), minute=int(g["minute"]))
            if g["second"] is not None:
                start = start.replace(second=int(g["second"]))
    except ValueError as exc:
        raise SearchError(f"{text!r} is not a date: {exc}") from None
    zone = g["zone"]
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 14 or minutes > 59:
            raise SearchError(f"{zone!r} is not a time zone")
        try:
            start -= sign * timedelta(hours=hours, minutes=minutes)
        except OverflowError:
            raise SearchError(f"{text!r} is outside the years 1 to 9999") from None
    start_us = (start - _EPOCH) // timedelta(microseconds=1)
    if g["fraction"] is not None:
        digits = g["fraction"]
        start_ns = start_us * 1000 + int(digits) * 10 ** (9 - len(digits))
        end_ns = start_ns + 10 ** (9 - len(digits))
        return start_ns // 1_000_000, -(-end_ns // 1_000_000)
    step = _step(g, start)
    return start_us // 1000, (start_us + step // timedelta(microseconds=1)) // 1000


def _step(g: Mapping[str, str | None], start: datetime) -> timedelta:
    """The length of the precision a date was given at."""
    if g["second"] is not None:
        return timedelta(seconds=1)
    if g["minute"] is not None:
        return timedelta(minutes=1)
    if g["day"] is not None:
        return timedelta(days=1)
    try:
        if g["month"] is not None:
            month = start.month % 12 + 1
            return start.replace(year=start.year + (month == 1), month=month) - start
        return start.replace(year=start.year + 1) - start
    except ValueError:  # the last month of year 9999: to its end
        return datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - start


def _date(state: _State, value: str) -> None:
    if "," in value:
        raise SearchError("date values are combined with AND: repeat the parameter")
    prefix, text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix not in PREFIXES:
        raise SearchError(f"the date prefix {prefix!r} is not supported", "not-supported")
    low, high = date_range(text)
    start, end = {
        "eq": (low, high),
        "ge": (low, None),
        "gt": (high, None),
        "le": (None, high),
        "lt": (None, low),
    }[prefix]
    if start is not None:
        state.start_ms = start if state.start_ms is None else max(state.start_ms, start)
    if end is not None:
        state.end_ms = end if state.end_ms is None else min(state.end_ms, end)


def _start(state: _State, value: str) -> None:
    _date(state, "ge" + value)


def _end(state: _State, value: str) -> None:
    _date(state, "le" + value)


def _number(value: str, name: str, low: int, high: int) -> int:
    if _DIGITS.fullmatch(value) is None or not low <= int(value) <= high:
        raise SearchError(f"{name} is a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _count(state: _State, value: str) -> None:
    state.count = _number(value, "_count", 1, MAX_COUNT)


def _max(state: _State, value: str) -> None:
    state.max_per_code = _number(value, "max", 1, MAX_LASTN)


def _sort(state: _State, value: str) -> None:
    if value not in SORTS:
        raise SearchError(f"_sort is date or -date, not {value!r}", "not-supported")
    state.descending = SORTS[value]


def _cursor(state: _State, value: str) -> None:
    if len(value) > MAX_CURSOR_CHARS:
        raise SearchError("the _cursor is not one of this server's")
    state.cursor = value


def _format(state: _State, value: str) -> None:
    """Read by content negotiation (``fhirserver.media``); nothing to do here."""


_PARSERS = {
    "patient": _patient,
    "subject": _patient,
    "code": _code,
    "category": _category,
    "date": _date,
    "target": _target,
    "start": _start,
    "end": _end,
    "_sort": _sort,
    "_count": _count,
    "max": _max,
    CURSOR: _cursor,
    FORMAT: _format,
}
KNOWN: frozenset[str] = frozenset(_PARSERS)


def query_string(items: Sequence[tuple[str, str]]) -> str:
    """Items as a URL query (FHIR's ``|`` and ``,`` left readable)."""
    return urlencode(list(items), safe="|,:/")
