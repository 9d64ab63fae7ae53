"""The subscription topics this server offers: what triggers a notification, and the filters.

A topic (R5 ``SubscriptionTopic``; on R4 it has no resource, the Backport IG names it by its
canonical URL in ``Subscription.criteria``) is data here, so the alerts topic of the ward
issue is one more :class:`Topic` beside :data:`NEW_VITAL_SIGNS`. Each topic names the resource
its events focus on, the filter parameters a subscription may set (``backport-filter-criteria``,
search syntax: ``Observation?patient=Patient/p-17``), which of them are required, and the
data class a notification discloses - the access policy decides every subscription and every
delivery on that class, for the one patient the filter names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from access.fields import is_patient_id
from access.policy import DataClass
from fhirserver.vital_signs import CATEGORY_SYSTEM, VITAL_SIGNS

TOPIC_PATH = "/fhir/SubscriptionTopic/"
MAX_FILTER_CHARS = 512


class FilterError(ValueError):
    """A filter criteria string this topic cannot apply; ``reason`` is a code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Topic:
    name: str  # the last segment of its canonical URL
    title: str
    resource: str  # the focus of its events
    filters: frozenset[str]  # the filter parameters a subscription may set
    required: frozenset[str]  # ... and those it must
    data_class: DataClass  # what a notification of it discloses, for the access policy
    category: str  # the Observation category its events carry

    def url(self, base_url: str) -> str:
        """Its canonical URL under this server's base (``Settings.base_url``)."""
        return f"{base_url.rstrip('/')}{TOPIC_PATH}{self.name}"

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether a new resource is an event of this topic (before its filter)."""
        if resource.get("resourceType") != self.resource:
            return False
        return any(
            coding.get("system") == CATEGORY_SYSTEM and coding.get("code") == self.category
            for concept in resource.get("category", [])
            for coding in concept.get("coding", [])
        )

    def parse_filters(self, criteria: list[str]) -> Mapping[str, str]:
        """The filter of ``backport-filter-criteria`` values (ANDed): each
        ``[Resource?]param=value[&...]`` with ``param`` or ``Resource.param``; a ``patient`` is
        ``Patient/<id>`` or ``<id>``. One value per parameter; every required one present."""
        found: dict[str, str] = {}
        for text in criteria:
            if not isinstance(text, str) or not 0 < len(text) <= MAX_FILTER_CHARS:
                raise FilterError(
                    "bad-filter", f"a filter is text of 1 to {MAX_FILTER_CHARS} characters"
                )
            head, mark, query = text.partition("?")
            if mark and head != self.resource:
                raise FilterError(
                    "bad-filter", f"this topic's filters are on {self.resource}, not {head!r}"
                )
            try:
                pairs = parse_qsl(query if mark else text, strict_parsing=True)
            except ValueError:
                raise FilterError("bad-filter", f"not a filter (param=value): {text!r}") from None
            for param, value in pairs:
                name = param.removeprefix(f"{self.resource}.")
                if name not in self.filters:
                    raise FilterError(
                        "unsupported-filter",
                        f"this topic filters by {', '.join(sorted(self.filters))}, not {param!r}",
                    )
                if name in found:
                    raise FilterError("bad-filter", f"{name} is given more than once")
                found[name] = _value(name, value)
        missing = sorted(self.required - set(found))
        if missing:
            raise FilterError("filter-required", f"this topic needs a filter on {missing[0]}")
        return found


def _value(name: str, value: str) -> str:
    if name == "patient":
        patient = value.removeprefix("Patient/")
        if not is_patient_id(patient):
            raise FilterError("bad-filter", "the patient filter is Patient/<id> or <id>")
        return patient
    raise FilterError("unsupported-filter", f"no rule for the filter {name!r}")  # pragma: no cover


NEW_VITAL_SIGNS = Topic(
    name="new-vital-signs",
    title="A new vital-signs Observation of a patient",
    resource="Observation",
    filters=frozenset({"patient"}),
    required=frozenset({"patient"}),
    data_class="vital-signs",
    category=VITAL_SIGNS,
)
TOPICS: tuple[Topic, ...] = (NEW_VITAL_SIGNS,)


def topic_of(url: str, base_url: str) -> Topic | None:
    """The topic whose canonical URL is ``url``, or None."""
    return next((t for t in TOPICS if t.url(base_url) == url), None)
