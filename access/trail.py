"""The access trail: one event per request that reads or writes, or is refused, patient data.

Shaped after IHE Basic Audit Log Patterns (PatientRead, PatientQuery, AuthZconsent) so that it
exports as FHIR AuditEvent (access.fhir). An event is deterministic CBOR with text keys::

    {"trail": "3f9c0a1b2c3d4e5f", "seq": 812, "time": 1763700000000,
     "agent": {"kind": "app", "id": "telemed-1", "role": "app", "jti": "b1f0..."},
     "patients": ["p-17"], "data": ["vital-signs"], "purpose": ["TREAT"],
     "outcome": "permit", "reason": "consent", "consents": [["p-17", 0]],
     "interaction": "read", "route": "GET /api/v1/patients/{patient_id}/vitals",
     "request": "7d0c..."}

``agent.kind`` is ``user`` or ``app``; ``agent.client`` (the OAuth client a user came
through) and ``agent.jti`` (the token's id) are there when known. ``patients``, ``data`` and
``purpose`` are sorted sets; ``break_glass`` (the reason a clinician gave) is there only for
a break-glass access; ``outcome`` is ``permit`` or ``deny`` with a reason code; ``consents``
names the grants an app's permit relied on; ``route`` is the route template, never the values
of a query beyond the patient ids listed; ``request`` is the X-Request-Id, when there is one.
The ledger key is ``("access/<trail>", seq)``: the journal's id and sequence number.

:meth:`AccessTrail.record` returns only once the event is committed, and raises
:class:`~access.errors.JournalError` if it cannot be: the caller must then refuse to serve
(fail closed: no trail, no data).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self

from access.consent import Grantee, is_data_class
from access.consent_store import ConsentStore
from access.errors import AccessEventError, ConsentRefused, JournalError
from access.fields import (
    dump_map,
    is_code,
    is_patient_id,
    is_principal,
    is_purpose,
    is_sorted_set,
    is_text,
    is_time,
    is_uint,
    load_map,
    sorted_set,
)
from access.journal import Journal
from devices.boundary import decoder
from devices.reading import MAX_SEQ
from ledger.appends import EntryKey
from ledger.entries import EntryKind

log = logging.getLogger("vitaltrail.access.trail")

PERMIT, DENY = "permit", "deny"
READ, SEARCH = "read", "search"  # FHIR restful-interaction read / search-type
CREATE = "create"  # FHIR restful-interaction create: staff documenting an observation
INTERACTIONS = (READ, SEARCH, CREATE)  # a tuple: a hostile list is not hashed
AGENT_KINDS = frozenset({"user", "app"})
BREAK_GLASS = "break-glass"  # the reason code of a break-glass permit

_KEYS = frozenset(
    {"trail", "seq", "time", "agent", "patients", "data", "purpose", "outcome", "reason"}
    | {"interaction", "route"}
)
_OPTIONAL = frozenset({"break_glass", "consents", "request"})
_AGENT = frozenset({"kind", "id", "role"})
_AGENT_OPTIONAL = frozenset({"client", "jti"})


def access_key(trail: str, seq: int) -> EntryKey:
    return EntryKey(f"access/{trail}", seq)


@dataclass(frozen=True)
class Agent:
    kind: str  # "user" or "app"
    id: str  # the user id (token sub) or the app's client id
    role: str  # clinician, patient, admin, app ...
    client: str | None = None  # the OAuth client a user's token was issued to
    jti: str | None = None  # the access token's id


@dataclass(frozen=True)
class Access:
    """What happened: who asked for which patients' data, and what was decided."""

    time_ms: int
    agent: Agent
    patients: tuple[str, ...]
    data: tuple[str, ...]
    purpose: tuple[str, ...]
    outcome: str  # PERMIT or DENY
    reason: str  # a code: why permitted (care-team, self, consent, break-glass) or refused
    interaction: str  # READ, SEARCH or CREATE
    route: str  # "GET /api/v1/patients/{patient_id}/vitals"
    break_glass: str | None = None
    consents: tuple[tuple[str, int], ...] = ()  # (patient, seq) of the grants relied on
    request_id: str | None = None

    def __post_init__(self) -> None:
        """Sets are kept sorted and distinct: the order a request lists them in is not recorded
        (and any iterable is taken)."""
        for name in ("patients", "data", "purpose"):
            object.__setattr__(self, name, sorted_set(getattr(self, name)))
        object.__setattr__(self, "consents", tuple(sorted({tuple(c) for c in self.consents})))

    @property
    def is_break_glass(self) -> bool:
        return self.break_glass is not None


@dataclass(frozen=True)
class AccessEvent:
    """An access as the trail recorded it: the journal's id and sequence number, and what."""

    trail: str
    seq: int
    access: Access

    @property
    def ledger_key(self) -> EntryKey:
        return access_key(self.trail, self.seq)

    def encode(self) -> bytes:
        a = self.access
        doc: dict[str, Any] = {
            "trail": self.trail,
            "seq": self.seq,
            "time": a.time_ms,
            "agent": {
                k: v
                for k, v in {
                    "kind": a.agent.kind,
                    "id": a.agent.id,
                    "role": a.agent.role,
                    "client": a.agent.client,
                    "jti": a.agent.jti,
                }.items()
                if v is not None
            },
            "patients": list(a.patients),
            "data": list(a.data),
            "purpose": list(a.purpose),
            "outcome": a.outcome,
            "reason": a.reason,
            "interaction": a.interaction,
            "route": a.route,
            "break_glass": a.break_glass,
            "consents": [list(c) for c in a.consents] or None,
            "request": a.request_id,
        }
        reason = _invalid(doc)
        if reason is not None:
            raise AccessEventError(reason)
        return dump_map(doc)

    @classmethod
    @decoder(AccessEventError, "the access event")
    def decode(cls, data: bytes) -> Self:
        """Parse an event body; :class:`AccessEventError` unless it is exactly a valid one."""
        doc = load_map(data, _KEYS, _OPTIONAL)
        if isinstance(doc, str):
            raise AccessEventError(f"an access event is {doc}")
        reason = _invalid(doc)
        if reason is not None:
            raise AccessEventError(reason)
        agent = doc["agent"]
        access = Access(
            doc["time"],
            Agent(agent["kind"], agent["id"], agent["role"], agent.get("client"), agent.get("jti")),
            tuple(doc["patients"]),
            tuple(doc["data"]),
            tuple(doc["purpose"]),
            doc["outcome"],
            doc["reason"],
            doc["interaction"],
            doc["route"],
            doc.get("break_glass"),
            tuple((p, s) for p, s in doc.get("consents", ())),
            doc.get("request"),
        )
        event = cls(doc["trail"], doc["seq"], access)
        if event.encode() != data:
            raise AccessEventError("access event is not deterministically encoded")
        return event


def _is_consent_ref(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and is_patient_id(value[0])
        and is_uint(value[1], MAX_SEQ)
    )


def _invalid(doc: Any) -> str | None:
    """Why a decoded event map is not a valid access event, or None."""
    if not (isinstance(doc["trail"], str) and is_code(doc["trail"])):
        return "an access event names its trail"
    if not is_uint(doc["seq"]) or doc["seq"] == 0:
        return "an access event's seq is an integer from 1 to 2**63 - 1"
    if not is_time(doc["time"]):
        return "an access event's time is milliseconds since the Unix epoch"
    agent = doc["agent"]
    if (
        not isinstance(agent, dict)
        or not set(agent) >= _AGENT
        or set(agent) - _AGENT - _AGENT_OPTIONAL
        or any(value is None for value in agent.values())
    ):
        return f"an agent is a map of {sorted(_AGENT)} and optionally {sorted(_AGENT_OPTIONAL)}"
    if not (isinstance(agent["kind"], str) and agent["kind"] in AGENT_KINDS) or not is_principal(
        agent["id"]
    ):
        return "an agent is a user or an app, with its id"
    if not is_code(agent["role"]):
        return "an agent's role is a code like clinician"
    if any(not is_principal(agent[k]) for k in _AGENT_OPTIONAL if agent.get(k) is not None):
        return "an agent's client and token id are ASCII without spaces"
    if not is_sorted_set(doc["patients"], is_patient_id, empty=True):
        return "an access event's patients are a sorted set of patient ids"
    if not is_sorted_set(doc["data"], lambda d: is_data_class(d) or is_code(d), empty=True):
        return "an access event's data are a sorted set of data classes"
    if not is_sorted_set(doc["purpose"], is_purpose, empty=True):
        return "an access event's purpose is a sorted set of PurposeOfUse codes"
    if doc["outcome"] not in (PERMIT, DENY) or not is_code(doc["reason"]):
        return "an access event's outcome is permit or deny, with a reason code"
    if doc["interaction"] not in INTERACTIONS or not is_text(doc["route"]):
        return "an access event names its interaction (read, search or create) and route"
    if doc.get("break_glass") is not None and not is_text(doc["break_glass"]):
        return "a break-glass reason is printable text"
    consents = doc.get("consents")
    if consents is not None and not is_sorted_set(consents, _is_consent_ref):
        return "an access event's consents are a sorted set of [patient, seq]"
    if doc.get("request") is not None and not is_principal(doc["request"]):
        return "a request id is ASCII without spaces"
    return None


class AccessTrail:
    """Records access events in the journal, each durable before :meth:`record` returns."""

    def __init__(self, journal: Journal, consents: ConsentStore | None = None) -> None:
        self._journal = journal
        self._consents = consents or ConsentStore(journal)
        self.unrecorded: Counter[str] = Counter()  # journal-error, withdrawn, not-in-force

    @property
    def trail_id(self) -> str:
        return self._journal.journal_id

    def record(self, access: Access) -> AccessEvent:
        """Commit the event; return it with its sequence number.

        A permit that names the consents it relies on is checked against the journal inside
        the commit: every patient, data class and purpose it names must be allowed, for its
        agent and time, by one of those grants. If not, nothing is recorded and
        :class:`~access.errors.ConsentRefused` says why - ``withdrawn`` (one was withdrawn
        since the decision) or ``not-in-force`` - and the caller decides again (a refusal).
        :class:`~access.errors.JournalError`: nothing was committed; serve nothing.
        """
        AccessEvent(self.trail_id, 1, access).encode()  # validate before taking the lock

        def check() -> None:
            if access.outcome == PERMIT and access.consents:
                _check_basis(access, self._consents)

        def build(seq: int) -> tuple[EntryKind, EntryKey, bytes, tuple[str, ...]]:
            event = AccessEvent(self.trail_id, seq, access)
            return EntryKind.ACCESS, event.ledger_key, event.encode(), access.patients

        try:
            row = self._journal.append(build, access.time_ms, check)
        except ConsentRefused as refused:
            self.unrecorded[refused.reason] += 1
            raise
        except JournalError:
            self.unrecorded["journal-error"] += 1
            raise
        return AccessEvent(self.trail_id, row.seq, access)

    def for_patient(self, patient_id: str) -> list[AccessEvent]:
        """Every recorded access that named the patient, permitted or refused, in order."""
        rows = self._journal.of_kinds([EntryKind.ACCESS], patient_id)
        return [AccessEvent.decode(row.body) for row in rows]


def _check_basis(access: Access, consents: ConsentStore) -> None:
    """Raise ConsentRefused unless the named grants allow everything the permit names."""
    if not (access.patients and access.data and access.purpose):
        raise ConsentRefused("not-in-force", "a permit on consent names patients, data, purpose")
    grantee = Grantee(access.agent.kind, access.agent.id)
    for patient in access.patients:
        state = consents.state(patient)
        grants = [
            grant
            for p, seq in access.consents
            if p == patient and (grant := state.statement(p, seq)) is not None
        ]
        if any(state.withdrawal_of(patient, g.seq) is not None for g in grants):
            raise ConsentRefused("withdrawn", "a consent relied on was withdrawn")
        for data_class in access.data:
            for purpose in access.purpose:
                if not any(
                    state.allows(g, grantee, data_class, purpose, access.time_ms) for g in grants
                ):
                    raise ConsentRefused("not-in-force", "no consent relied on allows this")
