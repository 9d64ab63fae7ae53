"""The gates of the FHIR routes: who the request is about, decided and recorded before data.

Like ``dashboards.access_deps``'s gates (and built on its :func:`decide`), each is a
dependency its handler takes, so the handler gets the decision - already committed to the
access trail - and cannot read before it. They differ in where the patient comes from:

``fhir_search``       the query (``patient``/``subject``, or ``target`` for Provenance: the
                      Observations' patients, from the index). A search naming its patients
                      is decided for them (a search: scopes must delegate ``s``; 403 if one is
                      refused). A search naming none is a listing: of the patients the index
                      knows, the caller sees those the policy lets them - a clinician their
                      care teams', a patient themself, an app those who consented to it -
                      and nobody else is ever read (none: a 200 of nothing, recorded
                      ``none-visible``). A query that can name nobody (``subject=Group/x``)
                      reads nothing and decides nothing.
``fhir_everything``   ``Patient/{id}/$everything``: each kind of data decided on its own (the
                      Patient first - refused, 403 - then Devices, Observations, Provenances,
                      Consents: a refusal leaves that kind out, on record like the rest).
``fhir_observation``, ``fhir_provenance``
                      an Observation's patient, from the index (404 before any decision when
                      the ledger holds no such Observation).
``fhir_device``       the device's patient, from the registry (404 likewise).

The query is parsed here, with the parameters the route declares (``fhirserver.capability``),
so a bad query is a 400 before anything is decided; the cursor of a ``next`` link too. Every
page of a walk is decided again: a consent withdrawn mid-walk stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from access.policy import AccessRequest, DataClass, Decision
from access.tokens import Principal
from dashboards.access_deps import BreakGlass, Caller, PatientId, Purpose, decide
from dashboards.fhir_answers import FHIR_BASE, FhirError
from dashboards.reads import Readers, read_pool
from dashboards.route_rules import PatientData, rule_of
from devices.registry import DeviceRecord
from fhirserver.capability import BY_PATH, PATIENT_EVERYTHING, Declared
from fhirserver.index import IndexRow, ObservationIndex
from fhirserver.observations import ObservationIdError, parse_observation_id, repeat_of
from fhirserver.paging import Cursor, binding
from fhirserver.search import Query, lenient, parse_query

FIRST_PAGE_CLASSES: tuple[DataClass, ...] = (
    "patient", "devices", "vital-signs", "proofs", "consents"
)  # fmt: skip
LATER_PAGE_CLASSES: tuple[DataClass, ...] = ("vital-signs", "proofs")

ObservationId = Annotated[str, Path(min_length=1, max_length=64)]
ProvenanceId = Annotated[str, Path(min_length=2, max_length=65)]
DeviceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def fhir_index(request: Request) -> ObservationIndex:
    index: ObservationIndex = request.app.state.fhir_index
    return index


def declared_of(request: Request) -> Declared:
    """The declaration of the route this request is on."""
    path = getattr(request.scope.get("route"), "path", "")
    return BY_PATH[path.removeprefix(FHIR_BASE)]


def _data_class(request: Request) -> DataClass:
    rule = rule_of(request.scope.get("route"), request.app)
    if not isinstance(rule, PatientData):
        raise HTTPException(403, "a patient-data gate on a route not declared as patient data")
    return rule.data_class


def _query(
    request: Request, declared: Declared, walk: str | None = None
) -> tuple[Query, Cursor | None]:
    """The query as the route declares it, and the cursor it continues (400s raised): a
    cursor of this ``walk`` (the interaction's path, the patient's for ``$everything``)."""
    query = parse_query(
        request.query_params.multi_items(),
        declared.accepted,
        lenient=lenient(request.headers.get("prefer")),
    )
    given = {name for name, _ in query.used}
    if declared.required and not given & set(declared.required):
        needed = " or ".join(declared.required)
        raise FhirError(400, f"this search needs the parameter {needed}", code="required")
    cursor = None
    if query.cursor is not None:
        key = fhir_index(request).cursor_key
        cursor = Cursor.decode(query.cursor, key, binding(walk or declared.path, query))
    return query, cursor


@dataclass(frozen=True)
class Searched:
    """A search the policy decided: whom it may read, and the log size its pages see."""

    declared: Declared
    query: Query
    cursor: Cursor | None
    decision: Decision | None  # None: the query names no one, and nothing was read
    patients: tuple[str, ...]  # those the search reads
    as_of: int  # entries below this are in the walk (0 when the index is not used)


async def fhir_search(
    request: Request, principal: Caller, break_glass: BreakGlass = None, purpose: Purpose = None
) -> Searched:
    """The gate of a FHIR search: see the module's docstring."""
    declared = declared_of(request)
    data_class = _data_class(request)
    query, cursor = _query(request, declared)
    index = fhir_index(request)
    follows = declared.resource in ("Observation", "Provenance")

    def prepare(r: Readers) -> tuple[int, tuple[str, ...] | None, tuple[str, ...]]:
        """The log size, the patients named (None: a listing) and the listing's candidates."""
        as_of = cursor.as_of if cursor is not None else index.catch_up(r.ledger) if follows else 0
        if query.targets is not None:
            rows = [target_row(r, t) for t in query.targets]
            return as_of, tuple(sorted({row.patient_id for row in rows if row})), ()
        if query.patients is None:
            return as_of, None, tuple(r.observations.patients())
        return as_of, query.patients, ()

    as_of, named, candidates = await read_pool(request).run(prepare)
    if named == ():
        return Searched(declared, query, cursor, None, (), as_of)
    codes = tuple(sorted(query.codes)) if query.codes else ()
    asked = AccessRequest(
        data_class, named, candidates, codes, purpose, break_glass, search=named is not None
    )
    decision = await decide(request, principal, asked)
    return Searched(
        declared, query, cursor, decision, decision.patients if decision.permit else (), as_of
    )


def target_row(r: Readers, text: str) -> IndexRow | None:
    """The Observation an id names, if the index holds it."""
    try:
        entry_index, code = parse_observation_id(text)
    except ObservationIdError:
        return None
    return r.observations.row(entry_index, code, repeat_of(text))


def everything_path(patient_id: str) -> str:
    """The path of a patient's ``$everything``, whose pages' cursors are bound to it."""
    return PATIENT_EVERYTHING.path.format(patient_id=patient_id)


@dataclass(frozen=True)
class Everything:
    """``$everything``: the patient, and the decision on each kind of data it may include."""

    patient_id: str
    query: Query
    cursor: Cursor | None
    as_of: int
    permitted: dict[str, Decision]  # data class -> its permit (refused classes left out)


async def fhir_everything(
    request: Request,
    principal: Caller,
    patient_id: PatientId,
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> Everything:
    """The gate of ``$everything``: see the module's docstring."""
    declared = declared_of(request)
    query, cursor = _query(request, declared, everything_path(patient_id))
    index = fhir_index(request)
    if cursor is None:
        as_of = await read_pool(request).run(lambda r: index.catch_up(r.ledger))
    else:
        as_of = cursor.as_of
    classes = FIRST_PAGE_CLASSES if cursor is None else LATER_PAGE_CLASSES
    permitted: dict[str, Decision] = {}
    for data_class in classes:
        asked = AccessRequest(data_class, (patient_id,), (), (), purpose, break_glass)
        try:
            permitted[data_class] = await decide(request, principal, asked)
        except HTTPException as refused:
            if refused.status_code != 403 or data_class == classes[0]:
                raise
    return Everything(patient_id, query, cursor, as_of, permitted)


@dataclass(frozen=True)
class Resolved:
    """A read of one Observation (or its Provenance): the decision, and whose it is."""

    decision: Decision
    observation_id: str
    row: IndexRow  # the Observation, as indexed


async def _resolved(
    request: Request,
    principal: Principal,
    observation_id: str,
    break_glass: str | None,
    purpose: str | None,
) -> Resolved:
    data_class = _data_class(request)
    try:
        entry_index, code = parse_observation_id(observation_id)
    except ObservationIdError as exc:
        raise FhirError(404, f"no Observation {observation_id[:64]!r}: {exc}") from None
    index = fhir_index(request)

    def find(r: Readers) -> IndexRow | None:
        index.catch_up(r.ledger)
        return r.observations.row(entry_index, code, repeat_of(observation_id))

    row = await read_pool(request).run(find)
    if row is None:
        raise FhirError(404, f"the ledger holds no Observation {observation_id}")
    asked = AccessRequest(data_class, (row.patient_id,), (), (row.code,), purpose, break_glass)
    return Resolved(await decide(request, principal, asked), observation_id, row)


async def fhir_observation(
    request: Request,
    principal: Caller,
    observation_id: ObservationId,
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> Resolved:
    """The gate of ``Observation/{id}``."""
    return await _resolved(request, principal, observation_id, break_glass, purpose)


async def fhir_provenance(
    request: Request,
    principal: Caller,
    provenance_id: ProvenanceId,
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> Resolved:
    """The gate of ``Provenance/{id}``: ``p`` and the id of the Observation it is of."""
    if not provenance_id.startswith("p"):
        raise FhirError(404, f"no Provenance {provenance_id[:64]!r}")
    return await _resolved(request, principal, provenance_id[1:], break_glass, purpose)


@dataclass(frozen=True)
class DeviceRead:
    decision: Decision
    device: DeviceRecord


async def fhir_device(
    request: Request,
    principal: Caller,
    device_id: DeviceId,
    break_glass: BreakGlass = None,
    purpose: Purpose = None,
) -> DeviceRead:
    """The gate of ``Device/{id}``: the registry's device, decided as its patient's data."""
    data_class = _data_class(request)
    device = await read_pool(request).run(lambda r: r.registry.get(device_id))
    if device is None:
        raise FhirError(404, f"no Device {device_id}")
    asked = AccessRequest(data_class, (device.patient_id,), (), (), purpose, break_glass)
    return DeviceRead(await decide(request, principal, asked), device)


FhirSearch = Annotated[Searched, Depends(fhir_search)]
FhirEverything = Annotated[Everything, Depends(fhir_everything)]
FhirObservation = Annotated[Resolved, Depends(fhir_observation)]
FhirProvenance = Annotated[Resolved, Depends(fhir_provenance)]
FhirDevice = Annotated[DeviceRead, Depends(fhir_device)]
FHIR_GATES = (fhir_search, fhir_everything, fhir_observation, fhir_provenance, fhir_device)
