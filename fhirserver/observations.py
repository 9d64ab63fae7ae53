"""The Observations of a signed reading, and their stable ids.

A device's signed message (``devices.reading.Reading``) holds one or more samples; each
becomes one Observation, except that a blood-pressure cuff's systolic and diastolic samples of
the same time become one 85354-9 panel (``fhirserver.vital_signs``). The id names the ledger
entry and the Observation's code - ``e123-8867-4``, ``e123-85354-9`` - so it never changes and
a client can cache it. A message may hold several samples of one code (a device that batches
its samples): the second and later of a code get ``.1``, ``.2``... (``e123-8867-4.1``), in the
order the device signed them.
"""

from __future__ import annotations

import re
from typing import Any

from access.fhir import LEDGER_INDEX, instant
from devices.boundary import decoder
from devices.reading import MAX_SAMPLES, Reading, Sample
from fhirserver.directory import reference
from fhirserver.vital_signs import Kind, Measure, kind_of
from ledger.tlog_proof import MAX_INDEX

READING_SYSTEM = "urn:vitaltrail:reading"  # "<device>/<seq>" a message, ".../<code>" a part
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MAX_ID_LENGTH = 64  # FHIR's limit for an id

_ID = re.compile(r"e(0|[1-9][0-9]{0,19})-([0-9]{1,7}-[0-9])(?:\.([1-9][0-9]?))?")


class ObservationIdError(Exception):
    """Text that is not the id of an Observation this server makes."""


def observation_id(entry_index: int, code: str, repeat: int = 0) -> str:
    """``e<entry index>-<code>``; the ``repeat``-th further sample of the code adds ``.<repeat>``."""
    return f"e{entry_index}-{code}{_repeat_suffix(repeat)}"


@decoder(ObservationIdError, "the observation id")
def parse_observation_id(text: str) -> tuple[int, str]:
    """The ledger entry index and Observation code an id names; raise
    :class:`ObservationIdError` for anything else. A repeat (``.1``) is checked, not returned:
    pick the Observation by its whole id among :func:`observations_of` the entry."""
    if not isinstance(text, str) or len(text) > MAX_ID_LENGTH:
        raise ObservationIdError(f"an observation id is text of at most {MAX_ID_LENGTH} characters")
    match = _ID.fullmatch(text)
    if match is None:
        raise ObservationIdError("an observation id is e<entry index>-<LOINC code>[.<repeat>]")
    index, code, repeat = match.groups()
    if int(index) > MAX_INDEX:
        raise ObservationIdError("the entry index is a 64-bit unsigned integer")
    if repeat is not None and int(repeat) >= MAX_SAMPLES:
        raise ObservationIdError(f"a reading holds at most {MAX_SAMPLES} samples")
    return int(index), code


def repeat_of(observation_id: str) -> int:
    """The repeat an id names (``e123-8867-4.1``: 1; none: 0); the id parses already."""
    head, dot, repeat = observation_id.rpartition(".")
    return int(repeat) if dot and "-" in head else 0


def observations_of(
    reading: Reading, entry_index: int, patient_id: str, logged_at_ms: int
) -> list[dict[str, Any]]:
    """One FHIR R4 Observation per vital of the reading recorded at ``entry_index`` (blood
    pressure as one panel), in the order of their first sample."""
    return [
        _observation(kind, samples, reading, entry_index, repeat, patient_id, logged_at_ms)
        for kind, samples, repeat in _parts(reading)
    ]


def observation_keys(reading: Reading) -> list[tuple[str, int, int]]:
    """``(code, repeat, effective time ms)`` of each Observation :func:`observations_of` makes
    of a reading, in the same order, without making them (what the search index keeps)."""
    return [(kind.code, repeat, _time(samples)) for kind, samples, repeat in _parts(reading)]


Group = tuple[Kind, list[Sample | None]]


def _parts(reading: Reading) -> list[tuple[Kind, list[Sample | None], int]]:
    """Each Observation's kind, samples and repeat number (the how-many-th of its code)."""
    seen: dict[str, int] = {}
    parts = []
    for kind, samples in _groups(reading.samples):
        repeat = seen.get(kind.code, 0)
        seen[kind.code] = repeat + 1
        parts.append((kind, samples, repeat))
    return parts


def _groups(samples: tuple[Sample, ...]) -> list[Group]:
    """Each Observation's samples: one, or a panel's components by slot (None where missing).
    A component joins the first panel of its kind that lacks it and holds samples of its time."""
    groups: list[Group] = []
    for sample in samples:
        kind = kind_of(sample.code)
        if not kind.components:
            groups.append((kind, [sample]))
            continue
        slot = kind.component_codes.index(sample.code)
        for group_kind, parts in groups:
            if group_kind is kind and parts[slot] is None and _time(parts) == sample.time_ms:
                parts[slot] = sample
                break
        else:
            parts = [None] * len(kind.components)
            parts[slot] = sample
            groups.append((kind, parts))
    return groups


def _time(parts: list[Sample | None]) -> int:
    return next(s.time_ms for s in parts if s is not None)


def _observation(
    kind: Kind,
    samples: list[Sample | None],
    reading: Reading,
    entry_index: int,
    repeat: int,
    patient_id: str,
    logged_at_ms: int,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"lastUpdated": instant(logged_at_ms)}
    if kind.profile is not None:
        meta["profile"] = [kind.profile]
    identifier = f"{reading.device_id}/{reading.seq}/{kind.code}{_repeat_suffix(repeat)}"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(entry_index, kind.code, repeat),
        "meta": meta,
        "extension": [{"url": LEDGER_INDEX, "valueUnsignedInt": entry_index}],
        "identifier": [{"system": READING_SYSTEM, "value": identifier}],
        "status": "final",
    }
    category = kind.category_json()
    if category:
        resource["category"] = category
    resource |= {
        "code": kind.measure.code(),
        "subject": reference("Patient", patient_id),
        "effectiveDateTime": instant(_time(samples)),
        "issued": instant(logged_at_ms),
        "device": reference("Device", reading.device_id),
    }
    if kind.components:
        resource["component"] = [
            _component(measure, sample)
            for measure, sample in zip(kind.components, samples, strict=True)
        ]
    else:
        (sample,) = samples
        assert sample is not None
        resource["valueQuantity"] = kind.measure.quantity(sample.value, sample.unit)
    return resource


def _component(measure: Measure, sample: Sample | None) -> dict[str, Any]:
    """A panel component: its value, or why there is none (a cuff that signed only one)."""
    component: dict[str, Any] = {"code": measure.code()}
    if sample is None:
        component["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT, "code": "unknown", "display": "Unknown"}]
        }
    else:
        component["valueQuantity"] = measure.quantity(sample.value, sample.unit)
    return component


def _repeat_suffix(repeat: int) -> str:
    return f".{repeat}" if repeat else ""
