"""Consent statements and access events as FHIR R4 resources (plain JSON dicts).

A Consent follows R4's privacy-consent pattern (scope patient-privacy, category LOINC
59284-0, policyRule OPTIN, one permit provision with the grantee as IRCP actor); an access
event becomes an AuditEvent after IHE Basic Audit Log Patterns (PatientRead / PatientQuery,
OAuth token use, AuthZconsent). Both carry the ledger index of the entry they come from in an
extension, so a reader can fetch the entry's inclusion proof. Identifiers use ``urn:vitaltrail:``
systems (see docs/formats.md).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from access.consent import VITAL_SIGNS, Consent, ConsentStatement, RecordedConsent, SignedConsent
from access.trail import CREATE, PERMIT, READ, SEARCH, AccessEvent
from ledger.appends import EntryKey

LEDGER_INDEX = "urn:vitaltrail:fhir:ledger-index"  # extension: valueUnsignedInt
RECORDED_BY = "urn:vitaltrail:fhir:consent-recorded-by"  # extension: who, role, reason
WITHDRAWS = "urn:vitaltrail:fhir:consent-withdraws"  # extension: the grant a withdrawal ends
CONSENT_SYSTEM = "urn:vitaltrail:consent"  # identifier value: "<patient>/<seq>"
USER_SYSTEM = "urn:vitaltrail:user"
CLIENT_SYSTEM = "urn:vitaltrail:client-id"

LOINC = "http://loinc.org"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"  # PurposeOfUse codes, BTG
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_AGENT = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
SERVER = "vitaltrail"
# An access event's interaction as AuditEvent.subtype (FHIR restful-interaction) and action.
SUBTYPE = {READ: "read", SEARCH: "search-type", CREATE: "create"}
ACTION = {READ: "R", SEARCH: "E", CREATE: "C"}


def instant(ms: int) -> str:
    """An ISO 8601 instant with milliseconds, in UTC. (A FHIR page writes a few per
    Observation, of a few distinct seconds: each second is formatted once.)"""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().removesuffix("+00:00")


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"system": system, "code": code}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code)]}


def _identifier(system: str, value: str) -> dict[str, Any]:
    return {"identifier": {"system": system, "value": value}}


def consent_identifier(patient_id: str, seq: int) -> dict[str, Any]:
    return {"system": CONSENT_SYSTEM, "value": f"{patient_id}/{seq}"}


def consent_resource(
    consent: Consent,
    ledger_index: int | None = None,
    *,
    grant: ConsentStatement | None = None,
    withdrawn: bool = False,
) -> dict[str, Any]:
    """The FHIR R4 Consent of a statement. A grant is ``active`` (``inactive`` once
    ``withdrawn``); a withdrawal is ``inactive``, names the grant it ends, and repeats that
    grant's provision when ``grant`` is given."""
    statement = consent.statement
    patient = {"reference": f"Patient/{statement.patient_id}"}
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "identifier": [consent_identifier(statement.patient_id, statement.seq)],
        "status": "active" if statement.is_grant and not withdrawn else "inactive",
        "scope": _concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
        "category": [_concept(LOINC, "59284-0")],
        "patient": patient,
        "dateTime": instant(statement.time_ms),
        "performer": [patient],
        "policyRule": _concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
    }
    extensions: list[dict[str, Any]] = []
    if ledger_index is not None:
        extensions.append({"url": LEDGER_INDEX, "valueUnsignedInt": ledger_index})
    if not statement.is_grant:
        assert statement.ends is not None
        extensions.append(
            {
                "url": WITHDRAWS,
                "valueIdentifier": consent_identifier(statement.patient_id, statement.ends),
            }
        )
    if isinstance(consent, RecordedConsent):
        extensions.append(
            {
                "url": RECORDED_BY,
                "extension": [
                    {"url": "who", "valueReference": _identifier(USER_SYSTEM, consent.recorder)},
                    {"url": "role", "valueCode": consent.role},
                    {"url": "reason", "valueString": consent.reason},
                ],
            }
        )
    if extensions:
        resource["extension"] = extensions
    if isinstance(consent, SignedConsent):
        resource["sourceAttachment"] = {
            "contentType": "application/cose",
            "data": base64.b64encode(consent.message).decode(),
            "title": "the patient's COSE_Sign1 over the consent statement",
        }
    provision_of = statement if statement.is_grant else grant
    if provision_of is not None:
        resource["provision"] = _provision(provision_of)
    return resource


def consent_resources(
    consents: Sequence[Consent], index_of: Callable[[EntryKey], int | None] | None = None
) -> list[dict[str, Any]]:
    """A patient's statements, in the order recorded, as Consents with today's status: a grant
    a later withdrawal ended is ``inactive``, and each withdrawal repeats its grant's provision.
    ``index_of`` (e.g. ``LedgerReader.log.index_of``) adds the ledger index of each one sealed."""
    grants = {c.statement.seq: c.statement for c in consents if c.statement.is_grant}
    ended = {c.statement.ends for c in consents if not c.statement.is_grant}
    return [
        consent_resource(
            c,
            index_of(c.statement.ledger_key) if index_of is not None else None,
            grant=grants.get(c.statement.ends) if c.statement.ends is not None else None,
            withdrawn=c.statement.is_grant and c.statement.seq in ended,
        )
        for c in consents
    ]


def _provision(grant: ConsentStatement) -> dict[str, Any]:
    assert grant.grantee is not None
    assert grant.start_ms is not None
    system = CLIENT_SYSTEM if grant.grantee.kind == "app" else USER_SYSTEM
    period = {"start": instant(grant.start_ms)}
    if grant.end_ms is not None:
        period["end"] = instant(grant.end_ms)
    return {
        "type": "permit",
        "period": period,
        "actor": [
            {
                "role": _concept(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"
                ),
                "reference": _identifier(system, grant.grantee.id),
            }
        ],
        "action": [
            _concept("http://terminology.hl7.org/CodeSystem/consentaction", a)
            for a in grant.actions
        ],
        "purpose": [_coding(ACT_REASON, p) for p in grant.purpose],
        "class": [_coding("http://hl7.org/fhir/resource-types", "Observation")],
        "code": [
            _concept("http://terminology.hl7.org/CodeSystem/observation-category", d)
            if d == VITAL_SIGNS
            else _concept(LOINC, d)
            for d in grant.data
        ],
    }


def audit_event(event: AccessEvent, ledger_index: int | None = None) -> dict[str, Any]:
    """The FHIR R4 AuditEvent of an access event (IHE BALP PatientRead / PatientQuery /
    PatientCreate)."""
    a = event.access
    read = a.interaction in (READ, CREATE)  # a resource, not a query
    purposes = [_concept(ACT_REASON, p) for p in a.purpose]
    agent_system = USER_SYSTEM if a.agent.kind == "user" else CLIENT_SYSTEM
    requestor: dict[str, Any] = {
        "type": _concept(BALP_AGENT, "UserOauthAgent")
        if a.agent.kind == "user"
        else _concept(DCM, "110153"),
        "role": [{"text": a.agent.role}],
        "who": _identifier(agent_system, a.agent.id),
        "requestor": True,
    }
    if a.agent.jti is not None:
        requestor["policy"] = [f"urn:ietf:params:oauth:jti:{a.agent.jti}"]
    if purposes:
        requestor["purposeOfUse"] = purposes
    agents = [requestor]
    if a.agent.kind == "user" and a.agent.client is not None:
        agents.append(
            {
                "type": _concept(DCM, "110153"),  # Source Role ID: the client application
                "who": _identifier(CLIENT_SYSTEM, a.agent.client),
                "requestor": False,
            }
        )
    agents.append(
        {
            "type": _concept(DCM, "110152"),  # Destination Role ID: this server
            "who": {"display": SERVER},
            "requestor": False,
        }
    )
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{p}"},
            "type": _coding(ENTITY_TYPE, "1"),
            "role": _coding(OBJECT_ROLE, "1"),
        }
        for p in a.patients
    ]
    route: dict[str, Any] = {"type": _coding(ENTITY_TYPE, "2"), "description": a.route}
    if read:
        route["role"] = _coding(OBJECT_ROLE, "4")  # the domain resource read
    else:
        route["role"] = _coding(OBJECT_ROLE, "24")  # the query
        route["query"] = base64.b64encode(a.route.encode()).decode()
    route["detail"] = [{"type": "data", "valueString": " ".join(a.data) or "-"}]
    entities.append(route)
    entities.extend(
        {
            "what": _identifier(CONSENT_SYSTEM, f"{patient}/{seq}"),
            "type": _coding("http://hl7.org/fhir/resource-types", "Consent"),
        }
        for patient, seq in a.consents
    )
    if a.request_id is not None:
        entities.append(
            {
                "what": {"identifier": {"value": a.request_id}},
                "type": _coding(BALP_ENTITY, "XrequestId"),
            }
        )
    purpose_of_event = list(purposes)
    if a.break_glass is not None:
        purpose_of_event.append({**_concept(ACT_REASON, "BTG"), "text": a.break_glass})
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest"),
        "subtype": [_coding("http://hl7.org/fhir/restful-interaction", SUBTYPE[a.interaction])],
        "action": ACTION[a.interaction],
        "recorded": instant(a.time_ms),
        "outcome": "0" if a.outcome == PERMIT else "4",
        "outcomeDesc": f"{a.outcome}: {a.reason}",
        "agent": agents,
        "source": {
            "observer": {"display": SERVER},
            "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
        "entity": entities,
    }
    if purpose_of_event:
        resource["purposeOfEvent"] = purpose_of_event
    extensions: list[dict[str, Any]] = [
        {"url": "urn:vitaltrail:fhir:access-trail", "valueString": event.trail}
    ]
    if ledger_index is not None:
        extensions.append({"url": LEDGER_INDEX, "valueUnsignedInt": ledger_index})
    resource["extension"] = extensions
    return resource
