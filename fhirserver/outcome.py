"""OperationOutcome: how a FHIR server says what went wrong (hl7.org/fhir/R4/operationoutcome.html).

One issue per outcome, with FHIR's severity and issue type, a sentence for people
(``diagnostics``) and, when there is one, the project's reason code (the same codes as the
JSON refusals of the rest of the API) as ``details``, so a client can branch on it.
"""

from __future__ import annotations

from typing import Any

REASON_SYSTEM = "urn:vitaltrail:reason"

SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
# R4 IssueType (hl7.org/fhir/R4/valueset-issue-type.html)
ISSUE_TYPES = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "security",
        "login",
        "unknown",
        "expired",
        "forbidden",
        "suppressed",
        "processing",
        "not-supported",
        "duplicate",
        "multiple-matches",
        "not-found",
        "deleted",
        "too-long",
        "code-invalid",
        "extension",
        "too-costly",
        "business-rule",
        "conflict",
        "transient",
        "lock-error",
        "no-store",
        "exception",
        "timeout",
        "incomplete",
        "throttled",
        "informational",
    }
)


def operation_outcome(
    severity: str, code: str, diagnostics: str, *, reason: str | None = None
) -> dict[str, Any]:
    """An OperationOutcome of one issue. ``severity`` and ``code`` must be R4 codes (a
    ``ValueError`` otherwise: a bug in the caller, not bad input)."""
    if severity not in SEVERITIES:
        raise ValueError(f"{severity!r} is not an R4 issue severity")
    if code not in ISSUE_TYPES:
        raise ValueError(f"{code!r} is not an R4 issue type")
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if reason is not None:
        issue["details"] = {"coding": [{"system": REASON_SYSTEM, "code": reason}], "text": reason}
    return {"resourceType": "OperationOutcome", "issue": [issue]}
