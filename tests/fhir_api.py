"""Helpers of the FHIR API tests: walking next links, and checking every resource returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from access.journal import Journal
from access.trail import AccessEvent
from ledger.entries import EntryKind
from tests.fhir_validation import check_vital_signs, validate
from vitaltrail.settings import Settings

FHIR_JSON = "application/fhir+json; charset=utf-8"


def fhir_get(client: TestClient, url: str, headers: dict[str, str], status: int = 200) -> Any:
    """GET a FHIR URL: the status expected, FHIR JSON, and a valid resource (an
    OperationOutcome for a refusal); its JSON."""
    response = client.get(url, headers=headers)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"] == FHIR_JSON, url
    body = response.json()
    checked(body)
    if status >= 400:
        assert body["resourceType"] == "OperationOutcome", body
    return body


def checked(resource: dict[str, Any]) -> None:
    """Valid R4 (R4B models), and every Observation keeps the vital-signs rules."""
    validate(resource)
    resources = [e["resource"] for e in resource.get("entry", [])] or [resource]
    for r in resources:
        if r["resourceType"] == "Observation":
            assert check_vital_signs(r) == [], r


def next_url(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


def walk(
    client: TestClient,
    url: str,
    headers: dict[str, str],
    between: Callable[[int], None] | None = None,
    max_pages: int = 200,
) -> list[dict[str, Any]]:
    """Every page of a search, following next links; ``between(n)`` runs after page n."""
    pages: list[dict[str, Any]] = []
    following: str | None = url
    while following is not None:
        assert len(pages) < max_pages, "the walk does not end"
        page = fhir_get(client, following, headers)
        pages.append(page)
        if between is not None:
            between(len(pages))
        following = next_url(page)
    return pages


def ids(pages: list[dict[str, Any]], resource_type: str = "Observation") -> list[str]:
    return [
        e["resource"]["id"]
        for page in pages
        for e in page["entry"]
        if e["resource"]["resourceType"] == resource_type
    ]


def access_events(settings: Settings) -> list[AccessEvent]:
    journal = Journal(settings.access_journal_path)
    try:
        return [
            AccessEvent.decode(row.body) for row in journal.after(0) if row.kind is EntryKind.ACCESS
        ]
    finally:
        journal.close()
