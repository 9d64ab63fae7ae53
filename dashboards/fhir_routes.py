"""The FHIR R4 API under ``/fhir``: one route per interaction ``fhirserver.capability``
declares, at the path it declares, and ``/fhir/metadata`` saying exactly that.

Every route but ``metadata`` (public: no patient data) is patient data: it declares its data
class (``@access(PatientData(...))``) and takes a gate (``dashboards.fhir_gates``, or
``access_deps.path_patient`` for ``Patient/{id}``) whose decision is in the access trail before
the handler runs. The SMART scopes a caller's token must carry follow from the data class
(``access.policy.RESOURCE``): ``Observation.rs`` for Observations, ``Provenance.rs``,
``Patient.rs``, ``Device.rs``, ``Consent.rs``, ``AuditEvent.rs``, in the ``user/``,
``patient/`` or ``system/`` context of the caller's role.

Answers are ``application/fhir+json`` (:mod:`dashboards.fhir_answers`); a request that will
take nothing but XML or another format is refused first (406, ``fhirserver.media``). Reads run
on the app's read pool. Searches page with ``next`` links (``fhirserver.paging``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from dashboards.access_deps import PathPatient, PatientId
from dashboards.fhir_answers import FHIR_BASE, RESPONSES, FhirError, FhirJSON, FhirRoute
from dashboards.fhir_gates import (
    FhirDevice,
    FhirEverything,
    FhirObservation,
    FhirProvenance,
    FhirSearch,
    Searched,
    everything_path,
    fhir_index,
)
from dashboards.fhir_reads import (
    audit_events_of,
    consents_of,
    everything_page,
    latest_observations,
    observation,
    observation_page,
    provenance,
    provenances_of_targets,
)
from dashboards.reads import Readers, ReadPool, read_pool
from dashboards.route_rules import PatientData, Public, access
from fhirserver.capability import (
    AUDIT_EVENT_SEARCH,
    CONSENT_SEARCH,
    DEVICE_READ,
    METADATA_PATH,
    OBSERVATION_LASTN,
    OBSERVATION_READ,
    OBSERVATION_SEARCH,
    PATIENT_EVERYTHING,
    PATIENT_READ,
    PROVENANCE_READ,
    PROVENANCE_SEARCH,
    Declared,
    capability_statement,
)
from fhirserver.directory import NotAFhirId, device_resource, patient_resource
from fhirserver.index import ObservationIndex
from fhirserver.media import FHIR_JSON, negotiate
from fhirserver.paging import Page, searchset
from fhirserver.search import (
    CURSOR,
    DEFAULT_COUNT,
    FORMAT,
    MAX_COUNT,
    MAX_CURSOR_CHARS,
    MAX_LASTN,
    SORTS,
)


async def follow_ledger(reads: ReadPool, index: ObservationIndex, interval_s: float) -> None:
    """Catch the observation index up with the ledger every ``interval_s``, on the read pool
    (its threads yield the CPU to ingest), so that no search waits for much indexing. Until
    cancelled; a busy pool or a failed round is tried again the next time."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await reads.run(lambda r: index.catch_up(r.ledger))
        except HTTPException:
            continue  # the pool is busy with requests: they catch up as they need
        except Exception as exc:  # the next round tries again; searches catch up anyway
            log.warning("the FHIR index could not follow the ledger: %s", type(exc).__name__)


async def negotiated(request: Request) -> None:
    """FHIR JSON or nothing: before any gate, so a refused format reads no patient data."""
    negotiate(request.query_params.getlist(FORMAT), request.headers.get("accept"))


log = logging.getLogger("vitaltrail.api.fhir")
# app.state: CapabilityStatement resource entries of what other routers implement (subscriptions)
FHIR_CAPABILITIES = "fhir_capabilities"

router = APIRouter(
    route_class=FhirRoute,
    tags=["fhir"],
    dependencies=[Depends(negotiated)],
    default_response_class=FhirJSON,
    responses=RESPONSES,
)
# The OpenAPI description of the result parameters (the search parameters describe themselves).
RESULT_PARAMETERS: dict[str, dict[str, Any]] = {
    "_sort": {"schema": {"type": "string", "enum": list(SORTS)}, "description": "date order"},
    "_count": {
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
        "description": f"page size (default {DEFAULT_COUNT})",
    },
    "max": {
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LASTN},
        "description": "how many of each code, newest first",
    },
    CURSOR: {
        "schema": {"type": "string", "maxLength": MAX_CURSOR_CHARS},
        "description": "where a page starts: take it from a next link, never make one",
    },
    "start": {"schema": {"type": "string"}, "description": "from this date (FHIR date)"},
    "end": {"schema": {"type": "string"}, "description": "to the end of this date"},
}
FORMAT_PARAMETER = {
    "name": FORMAT,
    "in": "query",
    "schema": {"type": "string", "enum": ["json", "application/json", FHIR_JSON]},
    "description": "FHIR JSON only (anything else: 406); overrides Accept",
}


def _documented(declared: Declared) -> dict[str, Any]:
    """The query parameters of a route, for its OpenAPI operation."""
    parameters = [
        {
            "name": p.name,
            "in": "query",
            "schema": {"type": "string"},
            "description": p.documentation,
        }
        for p in declared.params
    ]
    parameters += [{"name": n, "in": "query", **RESULT_PARAMETERS[n]} for n in declared.results]
    return {"parameters": [*parameters, FORMAT_PARAMETER]}


def _path(declared: Declared) -> str:
    return FHIR_BASE + declared.path


def _base(request: Request) -> str:
    """The FHIR base URL as the client reached it (behind trusted proxies, as they say)."""
    return str(request.base_url).rstrip("/") + FHIR_BASE


def _bundle(request: Request, path: str, searched: Searched, page: Page) -> FhirJSON:
    key = fhir_index(request).cursor_key
    return FhirJSON(
        searchset(_base(request), path, searched.query, page, key, searched.query.cursor)
    )


@router.get(FHIR_BASE + METADATA_PATH, openapi_extra={"parameters": [FORMAT_PARAMETER]})
@access(Public())
async def metadata(request: Request) -> FhirJSON:
    """The CapabilityStatement: what this server implements, and where to get a token."""
    statement = capability_statement(
        _base(request),
        request.app.state.token_endpoint,
        request.app.version,
        getattr(request.app.state, FHIR_CAPABILITIES, []),
    )
    return FhirJSON(statement)


@router.get(_path(OBSERVATION_SEARCH), openapi_extra=_documented(OBSERVATION_SEARCH))
@access(PatientData("vital-signs"))
async def search_observations(request: Request, searched: FhirSearch) -> FhirJSON:
    """Search Observations: ``patient``, ``code``, ``date``, ``_sort``, ``_count``."""
    page = await read_pool(request).run(lambda r: observation_page(r, searched))
    return _bundle(request, OBSERVATION_SEARCH.path, searched, page)


@router.get(_path(OBSERVATION_LASTN), openapi_extra=_documented(OBSERVATION_LASTN))
@access(PatientData("vital-signs"))
async def last_observations(request: Request, searched: FhirSearch) -> FhirJSON:
    """``$lastn``: a patient's newest ``max`` Observations of each code."""
    page = await read_pool(request).run(lambda r: latest_observations(r, searched))
    return _bundle(request, OBSERVATION_LASTN.path, searched, page)


@router.get(_path(OBSERVATION_READ), openapi_extra=_documented(OBSERVATION_READ))
@access(PatientData("vital-signs"))
async def read_observation(request: Request, read: FhirObservation) -> FhirJSON:
    """An Observation by its id: made from the signed message its ledger entry holds."""
    found = await read_pool(request).run(lambda r: observation(r, read.row))
    return FhirJSON(found.resource)


@router.get(_path(PATIENT_READ), openapi_extra=_documented(PATIENT_READ))
@access(PatientData("patient"))
async def read_patient(request: Request, patient_id: PatientId, decision: PathPatient) -> FhirJSON:
    """A Patient: vitaltrail knows its id (demographics live in the hospital's systems)."""

    def known(r: Readers) -> bool:
        if r.observations.codes(patient_id):
            return True
        return any(d.patient_id == patient_id for d in r.registry.all())

    if not await read_pool(request).run(known):
        raise FhirError(404, f"no Patient {patient_id}")
    try:
        return FhirJSON(patient_resource(patient_id))
    except NotAFhirId as exc:
        raise FhirError(404, str(exc)) from None


@router.get(_path(PATIENT_EVERYTHING), openapi_extra=_documented(PATIENT_EVERYTHING))
@access(PatientData("patient"))
async def patient_everything(request: Request, everything: FhirEverything) -> FhirJSON:
    """``$everything``: what the caller may read of the patient, a page of Observations (and
    their Provenances) at a time."""
    consents = request.app.state.consent_services.consents
    cosignatures = request.app.state.proof_cosignatures
    page = await read_pool(request).run(
        lambda r: everything_page(r, everything, consents, cosignatures)
    )
    path = everything_path(everything.patient_id)
    key = fhir_index(request).cursor_key
    query = everything.query
    return FhirJSON(searchset(_base(request), path, query, page, key, query.cursor))


@router.get(_path(DEVICE_READ), openapi_extra=_documented(DEVICE_READ))
@access(PatientData("devices"))
async def read_device(read: FhirDevice) -> FhirJSON:
    """A Device: the registry's record, its key's thumbprint as identifiers."""
    try:
        return FhirJSON(device_resource(read.device))
    except NotAFhirId as exc:
        raise FhirError(404, str(exc)) from None


@router.get(_path(PROVENANCE_READ), openapi_extra=_documented(PROVENANCE_READ))
@access(PatientData("proofs"))
async def read_provenance(request: Request, read: FhirProvenance) -> FhirJSON:
    """An Observation's Provenance: the device's signed message and the ledger's proof."""
    cosignatures = request.app.state.proof_cosignatures

    def made(r: Readers) -> dict[str, Any]:
        return provenance(r, observation(r, read.row), cosignatures)

    return FhirJSON(await read_pool(request).run(made))


@router.get(_path(PROVENANCE_SEARCH), openapi_extra=_documented(PROVENANCE_SEARCH))
@access(PatientData("proofs"))
async def search_provenances(request: Request, searched: FhirSearch) -> FhirJSON:
    """The Provenances of Observations: ``target=Observation/<id>``."""
    cosignatures = request.app.state.proof_cosignatures
    page = await read_pool(request).run(lambda r: provenances_of_targets(r, searched, cosignatures))
    return _bundle(request, PROVENANCE_SEARCH.path, searched, page)


@router.get(_path(CONSENT_SEARCH), openapi_extra=_documented(CONSENT_SEARCH))
@access(PatientData("consents"))
async def search_consents(request: Request, searched: FhirSearch) -> FhirJSON:
    """A patient's consents (for the patient themself)."""
    consents = request.app.state.consent_services.consents
    page = await read_pool(request).run(lambda r: consents_of(r, searched, consents))
    return _bundle(request, CONSENT_SEARCH.path, searched, page)


@router.get(_path(AUDIT_EVENT_SEARCH), openapi_extra=_documented(AUDIT_EVENT_SEARCH))
@access(PatientData("access-log"))
async def search_audit_events(request: Request, searched: FhirSearch) -> FhirJSON:
    """Who read a patient's data (for the patient themself), as IHE BALP AuditEvents."""
    trail = request.app.state.access.trail
    page = await read_pool(request).run(lambda r: audit_events_of(r, searched, trail))
    return _bundle(request, AUDIT_EVENT_SEARCH.path, searched, page)
