"""schemathesis against the API's own OpenAPI document, served by a real uvicorn, as each kind
of reader with a valid token: no server error anywhere, and every answer as documented.

Each reader gets a fresh data directory (three patients with readings in a sealed block) and
its own server: a clinician whose care team holds the three patients, patient-0 themself, and
a SMART backend app while patient-0's consent to it is in force. schemathesis runs its
examples, coverage, fuzzing and stateful phases with a fixed seed, derandomized, every check
on, except where the schema cannot say what the server rightly refuses (:data:`OPERATIONS`).

The requests carry a bearer token and no session cookie, so the CSRF rule (which guards what
a cookie authorises) has nothing to check: the sign-in and sign-out forms, which are not in
the schema, keep their own tests (``tests/test_session.py``, ``tests/test_auth_routes_sign_in.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from schemathesis.core.result import Ok
from schemathesis.engine import Status, StopReason, events, from_schema
from schemathesis.engine.recorder import CheckNode

from dashboards.app import create_app
from devices.vitals import BY_CODE
from fhirserver.capability import DECLARED
from tests.api_access import Tokens, bearer, consent, ward_headers
from tests.populated import populate
from tests.servers import free_port, serving
from vitaltrail.runtime import data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.integration

PATIENTS = ["patient-0", "patient-1", "patient-2"]
SEED = 20_260_127
MAX_EXAMPLES = 10  # per operation and phase: 22 operations x 3 readers in ~25 s on 2 cores
# Schema-valid requests the server rightly refuses, because what makes them acceptable is
# beyond what a schema can say: a signature or key that checks out (400), or a rule across
# two parameters (422: start before end, old size not above new).
SEMANTIC_REFUSALS = {
    "POST /auth/token": "400",
    "POST /api/v1/me/keys": "400",
    "POST /api/v1/me/consents": "400",
    "POST /api/v1/patients/{patient_id}/consents": "400",
    "POST /api/v1/patients/{patient_id}/documented": "422",  # at least one; flow with oxygen
    "POST /api/v1/patients/{patient_id}/alerts/{alert_id}/snooze": "422",  # within the limit
    "GET /api/v1/consistency": "422",
    "GET /api/v1/patients/{patient_id}/vitals/{code}": "422",
    # a Subscription names a topic of this server, a patient and an endpoint it will take;
    # $events' event numbers are digits (strings, as the Backport IG defines them)
    "POST /fhir/Subscription": "400",
    "GET /fhir/Subscription/{sub_id}/$events": "400",
} | {
    # FHIR's search grammar (tokens, references, dates; a parameter one of which is required)
    f"GET /fhir{d.path}": "400"
    for d in DECLARED
    if d.params or d.results
}
# Values the server holds, drawn half the time for these path parameters, so that the answers
# with data are tested as well as the refusals and the not-founds.
KNOWN = {
    "patient_id": [*PATIENTS, "patient-9"],
    "index": list(range(3, 18)),  # the 15 readings (0-2: the devices' keys)
    "code": sorted(BY_CODE),
}
# Every reader reads data of patient-0 through these (and is refused the others').
READS = {
    "GET /api/v1/patients",
    "GET /api/v1/ward",
    "GET /api/v1/patients/{patient_id}/vitals",
    "GET /api/v1/patients/{patient_id}/devices",
    "GET /api/v1/readings/{index}",
}  # not the series (vitals/{code}): a case needs a known patient, a vital's code and a start
# before its end at once, which random cases reach too rarely to count on (tests/test_api.py)
CHECKS = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default
OPERATIONS = [
    {
        "include-name": name,
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, status]}},
    }
    for name, status in SEMANTIC_REFUSALS.items()
] + [
    # An open event stream never ends, so a case of it would hang the run: left out here on
    # purpose. tests/test_route_rules.py checks its rule and gate, tests/test_alert_stream.py
    # its refusals and messages.
    {"include-name": "GET /api/v1/alerts/stream", "enabled": False},
    # The FHIR operations chain by FHIR references, which schemathesis cannot infer: they are
    # fuzzed in every phase but the stateful one, whose steps go to the links it does find;
    # and with fewer examples (their search grammar has its own fuzz tests).
    {
        "include-path-regex": "^/fhir/",
        "phases": {"stateful": {"enabled": False}},
        "generation": {"max-examples": 4},
    },
]


def clinician(settings: Settings) -> dict[str, str]:
    return ward_headers(settings, PATIENTS)


def patient(settings: Settings) -> dict[str, str]:
    tokens = Tokens(settings)
    try:
        return tokens.headers("ana", "patient", "patient-0")
    finally:
        tokens.close()


def app(settings: Settings) -> dict[str, str]:
    tokens = Tokens(settings)
    try:
        token = tokens.app("telehealth")
    finally:
        tokens.close()
    consent(settings, "patient-0", "telehealth")
    return bearer(token)


@dataclass
class Run:
    """What one schemathesis run did: the schema's operations, cases by operation, and every
    failure or error."""

    operations: set[str]
    cases: Counter[str] = field(default_factory=Counter)
    answered: set[tuple[str, int]] = field(default_factory=set)  # (operation, status)
    checked: set[tuple[str, str]] = field(default_factory=set)  # (operation, check)
    failures: list[str] = field(default_factory=list)
    stop_reason: StopReason | None = None


def run_schemathesis(url: str, headers: dict[str, str]) -> Run:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "cache": {"enabled": False},  # nothing carried over from earlier runs
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {"enabled": True},
            "operations": OPERATIONS,
            "dictionaries": {name: {"values": values} for name, values in KNOWN.items()},
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": 0.5} for name in KNOWN
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    run = Run({operation.label for operation in operations})
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, node in recorder.cases.items():
                label = node.value.operation.label
                run.cases[label] += 1
                interaction = recorder.interactions.get(case_id)
                if interaction is not None and interaction.response is not None:
                    run.answered.add((label, interaction.response.status_code))
                for check in recorder.checks.get(case_id, []):
                    run.checked.add((label, check.name))
                    if check.status != Status.SUCCESS:
                        run.failures.append(_failure(label, check))
        elif isinstance(event, events.NonFatalError | events.FatalError):
            run.failures.append(f"{type(event).__name__}: {event}")
        elif isinstance(event, events.EngineFinished):
            run.stop_reason = event.stop_reason
            run.failures += [f"after the run: {f.title}\n{f.message}" for f in event.failures]
    return run


def _failure(label: str, check: CheckNode) -> str:
    info = check.failure_info
    if info is None:
        return f"{label}: {check.name}: {check.status}"
    failure = info.failure
    return f"{label}: {check.name}: {failure.title}\n{failure.message}\n{info.code_sample}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = populate(tmp_path / "data", patients=len(PATIENTS), readings=5)
    with serving(http_server(create_app(data_sources(settings)), "127.0.0.1", free_port())) as port:
        yield f"http://127.0.0.1:{port}", settings


@pytest.mark.parametrize("reader", [clinician, patient, app], ids=lambda f: f.__name__)
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    served: tuple[str, Settings], reader: Callable[[Settings], dict[str, str]]
) -> None:
    url, settings = served
    run = run_schemathesis(url, reader(settings))
    assert not run.failures, "\n\n".join(run.failures[:10])
    assert run.stop_reason is StopReason.COMPLETED
    # It tested something: every operation of the schema, with several cases each.
    assert len(run.operations) >= 22
    assert set(run.cases) == run.operations
    assert min(run.cases.values()) >= 5, run.cases
    assert sum(run.cases.values()) >= 600, run.cases
    # every check that can apply ran; no server error on every operation
    assert {(operation, "not_a_server_error") for operation in run.operations} <= run.checked
    assert {check for _, check in run.checked} >= CHECKS
    # and the token reached data: each read answered 200 at least once
    assert {(read, 200) for read in READS} <= run.answered
