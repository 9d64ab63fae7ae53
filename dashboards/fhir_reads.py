"""What the FHIR routes read, on a read thread (``dashboards.reads``), after their gate.

Each function takes a thread's :class:`~dashboards.reads.Readers` and a gate's decision and
returns resources: only of the patients the decision lets the caller read, only the codes it
shows (an app's consent to vital signs shows no glucose), only entries below the log size the
walk sees. Observations are made from the ledger's signed messages
(``fhirserver.ledger_reads``); a Provenance carries the message and, once a block with the
configured witness cosignatures covers it, the proof bundle ``vitaltrail verify`` checks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from access.consent_store import ConsentStore
from access.fhir import audit_event, consent_resources
from access.trail import AccessTrail
from dashboards.bundles import NoSuchReading, NotSealed, proof_bundle_for
from dashboards.fhir_gates import Everything, Searched, everything_path, target_row
from dashboards.reads import Readers
from fhirserver.directory import NotAFhirId, device_resource, is_fhir_id, patient_resource
from fhirserver.index import IndexRow, Slice
from fhirserver.ledger_reads import RecordedObservation, recorded_observations
from fhirserver.paging import Cursor, Page, binding
from fhirserver.provenance import provenance_for
from fhirserver.search import Query
from ledger.checkpoint import Checkpoint
from ledger.note import parse_note

TOTAL_CAP = 10_000  # a search's total is counted up to this many matches, else left out
MATCH, INCLUDE = "match", "include"
Shows = Callable[[str], bool] | None  # a decision's code filter; None: every code


def _codes(
    r: Readers, patients: tuple[str, ...], query: Query, shows: Shows
) -> tuple[str, ...] | None:
    """The codes a search may return: those asked (None: any) that the decision shows."""
    asked = None if query.codes is None else tuple(sorted(query.codes))
    if shows is None:
        return asked
    known = {c for p in patients for c in r.observations.codes(p) if shows(c)}
    return tuple(sorted(known if asked is None else known & set(asked)))


def _slice(
    r: Readers, searched: Searched | Everything, patients: tuple[str, ...], shows: Shows
) -> Slice:
    query = searched.query
    return Slice(
        patients,
        _codes(r, patients, query, shows),
        query.start_ms,
        query.end_ms,
        searched.as_of,
        query.descending,
        searched.cursor.after if searched.cursor is not None else None,
    )


def _page_of(
    r: Readers, where: Slice, count: int, bound: bytes
) -> tuple[list[RecordedObservation], Cursor | None, int | None]:
    """Up to ``count`` Observations of ``where``, the cursor of the rest, and the total."""
    rows: list[IndexRow] = r.observations.search(where, count + 1)
    following = None
    if len(rows) > count:
        rows = rows[:count]
        following = Cursor(where.as_of, rows[-1].key, bound)
    return recorded_observations(r.ledger, rows), following, r.observations.count(where, TOTAL_CAP)


def _shows(searched: Searched) -> Shows:
    """The decision's code filter, or None when it shows every code."""
    decision = searched.decision
    return None if decision is None or not decision.filtered else decision.shows


def observation_page(r: Readers, searched: Searched) -> Page:
    """A page of ``Observation?...``."""
    if not searched.patients:
        return Page([], None, 0)
    where = _slice(r, searched, searched.patients, _shows(searched))
    bound = binding(searched.declared.path, searched.query)
    found, following, total = _page_of(r, where, searched.query.count, bound)
    return Page([(o.resource, MATCH) for o in found], following, total)


def latest_observations(r: Readers, searched: Searched) -> Page:
    """``Observation/$lastn``: the newest ``max`` of each code, per patient."""
    if not searched.patients:
        return Page([], None, 0)
    where = _slice(r, searched, searched.patients, _shows(searched))
    rows = r.observations.latest(where, searched.query.max_per_code)
    found = recorded_observations(r.ledger, rows)
    return Page([(o.resource, MATCH) for o in found], None, len(found))


def observation(r: Readers, row: IndexRow) -> RecordedObservation:
    (found,) = recorded_observations(r.ledger, [row])
    return found


def provenance(r: Readers, recorded: RecordedObservation, cosignatures: int) -> dict[str, Any]:
    """The Provenance of an Observation: its signed message, and its proof bundle once a
    block with ``cosignatures`` witness cosignatures covers it (else marked pending)."""
    index = recorded.entry_index
    bundle_json, sealed_ms = None, None
    block = r.ledger.blocks.latest_cosigned(cosignatures)
    if block is not None and index < block.tree_size:
        try:
            bundle = proof_bundle_for(r.ledger, index, cosignatures)
        except (NotSealed, NoSuchReading):
            bundle = None
        if bundle is not None:
            bundle_json = bundle.to_json()
            note = parse_note(bundle.reading.proof.checkpoint_note)
            if Checkpoint.parse(note.text).size == block.tree_size:
                sealed_ms = block.sealed_at_ms
    return provenance_for(
        recorded.resource,
        recorded.sign1,
        bundle_json,
        recorded.reading.device_id,
        recorded.logged_at_ms,
        sealed_ms=sealed_ms,
    )


def provenances_of_targets(r: Readers, searched: Searched, cosignatures: int) -> Page:
    """``Provenance?target=Observation/<id>,...``: those of the targets the caller may read."""
    rows: list[IndexRow] = []
    for target in searched.query.targets or ():
        row = target_row(r, target)
        if row is not None and row.patient_id in searched.patients:
            rows.append(row)
    found = recorded_observations(r.ledger, rows)
    shows = _shows(searched)
    resources = [
        (provenance(r, o, cosignatures), MATCH)
        for o, row in zip(found, rows, strict=True)
        if shows is None or shows(row.code)
    ]
    return Page(resources, None, len(resources))


def everything_page(
    r: Readers, everything: Everything, consents: ConsentStore, cosignatures: int
) -> Page:
    """A page of ``Patient/{id}/$everything``: on the first, the Patient, their Devices and
    Consents; on each, a page of Observations (oldest first) and their Provenances - of each
    kind only what was permitted."""
    patient = everything.patient_id
    allowed = everything.permitted
    resources: list[tuple[dict[str, Any], str]] = []
    if everything.cursor is None:
        if "patient" in allowed:
            with contextlib.suppress(NotAFhirId):  # else referenced by identifier only
                resources.append((patient_resource(patient), MATCH))
        if "devices" in allowed:
            for device_id in r.observations.devices(patient):
                device = r.registry.get(device_id)
                if device is not None and device.patient_id == patient:
                    with contextlib.suppress(NotAFhirId):
                        resources.append((device_resource(device), INCLUDE))
        if "consents" in allowed:
            resources.extend((c, INCLUDE) for c in _consents(r, consents, patient))
    following = None
    decision = allowed.get("vital-signs")
    if decision is not None:
        shows = None if not decision.filtered else decision.shows
        where = _slice(r, everything, (patient,), shows)
        bound = binding(everything_path(patient), everything.query)
        found, following, _ = _page_of(r, where, everything.query.count, bound)
        for recorded in found:
            resources.append((recorded.resource, MATCH))
            if "proofs" in allowed:
                resources.append((provenance(r, recorded, cosignatures), INCLUDE))
    return Page(resources, following, None)


def consents_of(r: Readers, searched: Searched, consents: ConsentStore) -> Page:
    """``Consent?patient=``: the patient's statements as Consents, with today's status."""
    resources: list[tuple[dict[str, Any], str]] = []
    for patient in searched.patients:
        resources.extend((c, MATCH) for c in _consents(r, consents, patient))
    return Page(resources, None, len(resources))


def _consents(r: Readers, consents: ConsentStore, patient: str) -> list[dict[str, Any]]:
    """A patient's Consents, each with an id: its identifier, ``<patient>-<seq>``."""
    statements = [c for _, c in consents.statements(patient)]
    resources = consent_resources(statements, r.ledger.log.index_of)
    return [{**c, "id": _fhir_id(c["identifier"][0]["value"].replace("/", "-"))} for c in resources]


def _fhir_id(text: str) -> str:
    """``text`` when it is a FHIR id, else a digest of it (ids may not hold ``_``)."""
    if is_fhir_id(text):
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:40]


def audit_events_of(r: Readers, searched: Searched, trail: AccessTrail) -> Page:
    """``AuditEvent?patient=``: every recorded access to the patient's data, this one too."""
    resources: list[tuple[dict[str, Any], str]] = []
    for patient in searched.patients:
        for event in trail.for_patient(patient):
            index = r.ledger.log.index_of(event.ledger_key)
            resource = {**audit_event(event, index), "id": f"{event.trail}-{event.seq}"}
            resources.append((resource, MATCH))
    return Page(resources, None, len(resources))
