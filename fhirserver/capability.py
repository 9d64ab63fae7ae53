"""What the FHIR API implements, declared once: the routes are made from it, and so is the
CapabilityStatement ``GET /fhir/metadata`` serves, so the two cannot disagree.

:data:`DECLARED` lists every interaction: its resource type, the FHIR restful interaction
(``read``, ``search-type``) or operation (``$lastn``, ``$everything``), the path of its route
under ``/fhir``, and the parameters it accepts - search parameters (listed in the statement,
with their HL7 definitions) and result parameters (``_count``, ``_sort``, ``_cursor``, an
operation's own). ``dashboards/fhir_routes.py`` mounts one route per declaration, at its
path, and parses each request's query with the declared parameters; a test holds the app's
``/fhir`` routes to this list. The statement says what the server is (R4 4.0.1, JSON only) and
how to get a token: ``rest.security`` names the SMART-on-FHIR service and carries the
``oauth-uris`` extension with the token endpoint (``/.well-known/smart-configuration`` says
the rest). There is no ``authorize`` URI: apps use SMART Backend Services, no browser launch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fhirserver.search import CURSOR, KNOWN

FHIR_VERSION = "4.0.1"
STATEMENT_DATE = "2025-11-21"  # when what is declared here last changed
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
HL7_PARAM = "http://hl7.org/fhir/SearchParameter/"
HL7_OPERATION = "http://hl7.org/fhir/OperationDefinition/"

ParamType = Literal["reference", "token", "date"]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    definition: str
    documentation: str


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    definition: str


@dataclass(frozen=True)
class Declared:
    """One interaction a route implements."""

    resource: str
    interaction: Literal["read", "search-type", "operation"]
    path: str  # under /fhir, with FastAPI's {placeholders}
    params: tuple[SearchParam, ...] = ()
    results: tuple[str, ...] = ()  # result parameters: _count, _sort, _cursor, max ...
    operation: Operation | None = None
    required: tuple[str, ...] = ()  # a query must carry one of these parameters

    @property
    def accepted(self) -> frozenset[str]:
        """Every query parameter a request of this interaction may carry (and _format)."""
        return frozenset({p.name for p in self.params} | set(self.results))


def _param(name: str, type_: ParamType, definition: str, documentation: str) -> SearchParam:
    return SearchParam(name, type_, HL7_PARAM + definition, documentation)


PATIENT = _param("patient", "reference", "clinical-patient", "The patient: p-17 or Patient/p-17")
SUBJECT = _param("subject", "reference", "Observation-subject", "The subject: Patient/p-17")
CODE = _param(
    "code", "token", "clinical-code", "LOINC: http://loinc.org|8867-4 or 8867-4; commas OR"
)
CATEGORY = _param("category", "token", "Observation-category", "vital-signs")
DATE = _param("date", "date", "clinical-date", "effective time: eq, ge, gt, le, lt; repeat to AND")
TARGET = _param("target", "reference", "Provenance-target", "Observation/<id>")
CONSENT_PATIENT = _param("patient", "reference", "clinical-patient", "The patient who consents")
AUDIT_PATIENT = _param("patient", "reference", "AuditEvent-patient", "The patient whose data")
OBSERVATION_PARAMS = (PATIENT, SUBJECT, CODE, CATEGORY, DATE)

OBSERVATION_READ = Declared("Observation", "read", "/Observation/{observation_id}")
OBSERVATION_SEARCH = Declared(
    "Observation", "search-type", "/Observation", OBSERVATION_PARAMS, ("_sort", "_count", CURSOR)
)
OBSERVATION_LASTN = Declared(
    "Observation",
    "operation",
    "/Observation/$lastn",
    OBSERVATION_PARAMS,
    ("max",),
    Operation("lastn", HL7_OPERATION + "Observation-lastn"),
    required=("patient", "subject"),
)
PATIENT_READ = Declared("Patient", "read", "/Patient/{patient_id}")
PATIENT_EVERYTHING = Declared(
    "Patient",
    "operation",
    "/Patient/{patient_id}/$everything",
    (),
    ("start", "end", "_count", CURSOR),
    Operation("everything", HL7_OPERATION + "Patient-everything"),
)
DEVICE_READ = Declared("Device", "read", "/Device/{device_id}")
PROVENANCE_READ = Declared("Provenance", "read", "/Provenance/{provenance_id}")
PROVENANCE_SEARCH = Declared(
    "Provenance", "search-type", "/Provenance", (TARGET,), required=("target",)
)
CONSENT_SEARCH = Declared(
    "Consent", "search-type", "/Consent", (CONSENT_PATIENT,), required=("patient",)
)
AUDIT_EVENT_SEARCH = Declared(
    "AuditEvent", "search-type", "/AuditEvent", (AUDIT_PATIENT,), required=("patient",)
)

DECLARED: tuple[Declared, ...] = (
    OBSERVATION_READ,
    OBSERVATION_SEARCH,
    OBSERVATION_LASTN,
    PATIENT_READ,
    PATIENT_EVERYTHING,
    DEVICE_READ,
    PROVENANCE_READ,
    PROVENANCE_SEARCH,
    CONSENT_SEARCH,
    AUDIT_EVENT_SEARCH,
)
METADATA_PATH = "/metadata"
BY_PATH = {d.path: d for d in DECLARED}
PROFILES = {"Observation": VITAL_SIGNS_PROFILE}

assert all(d.accepted <= KNOWN for d in DECLARED), "a declared parameter nothing parses"


def capability_statement(
    base: str,
    token_endpoint: str | None,
    software_version: str,
    more: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The CapabilityStatement of :data:`DECLARED`, served from ``base`` (``.../fhir``), and of
    the resource entries ``more`` (what other parts implement: FHIR subscriptions)."""
    security: dict[str, Any] = {
        "cors": False,
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth 2.0 bearer tokens with SMART App Launch v2 scopes",
            }
        ],
        "description": (
            "SMART Backend Services (client_credentials, private_key_jwt) for apps; "
            "see .well-known/smart-configuration"
        ),
    }
    if token_endpoint is not None:
        security["extension"] = [
            {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_endpoint}]}
        ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "vitaltrail",
        "kind": "instance",
        "software": {"name": "vitaltrail", "version": software_version},
        "implementation": {
            "description": "vitaltrail: signed vital signs, each with the proof of its ledger entry",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": security,
                "resource": [_resource(t, ds) for t, ds in _by_resource(DECLARED)] + list(more),
            }
        ],
    }


def _by_resource(declared: Sequence[Declared]) -> list[tuple[str, list[Declared]]]:
    grouped: dict[str, list[Declared]] = {}
    for d in declared:
        grouped.setdefault(d.resource, []).append(d)
    return list(grouped.items())


def _resource(resource: str, declared: list[Declared]) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": resource}
    if resource in PROFILES:
        entry["supportedProfile"] = [PROFILES[resource]]
    entry["interaction"] = [
        {"code": d.interaction} for d in declared if d.interaction != "operation"
    ]
    entry["versioning"] = "no-version"
    entry["readHistory"] = False
    params = {p.name: p for d in declared if d.interaction == "search-type" for p in d.params}
    if params:
        entry["searchParam"] = [
            {
                "name": p.name,
                "definition": p.definition,
                "type": p.type,
                "documentation": p.documentation,
            }
            for p in params.values()
        ]
    operations = [d.operation for d in declared if d.operation is not None]
    if operations:
        entry["operation"] = [{"name": o.name, "definition": o.definition} for o in operations]
    return entry
