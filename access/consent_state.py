"""Which consents are in force: the statements of a log replayed in order.

The same rules serve the API (over the journal, for the next request) and the auditor (over
the ledger, at each access event's position), so the two cannot disagree. A grant is in force
at a position when it was recorded before it, has not been withdrawn before it, names the
grantee, the action, a purpose of the request and the data class asked for, and its period
holds the request's time. A withdrawal takes effect from its own position on: the request
after it is refused, whatever time the patient's app wrote in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from access.consent import VITAL_SIGNS, ConsentStatement, Grantee

# FHIR R4 vital signs (hl7.org/fhir/R4/vitalsigns.html): what a "vital-signs" grant covers.
# Glucose is a laboratory observation there, so it needs a grant of its own code.
VITAL_SIGN_CODES = frozenset(
    {
        "85353-1",  # the vital signs panel
        "9279-1",  # respiratory rate
        "8867-4",  # heart rate
        "2708-6",  # oxygen saturation in arterial blood
        "59408-5",  # oxygen saturation by pulse oximetry
        "8310-5",  # body temperature
        "8302-2",  # body height
        "9843-4",  # head circumference
        "29463-7",  # body weight
        "39156-5",  # BMI
        "85354-9",  # blood pressure panel
        "8480-6",  # systolic
        "8462-4",  # diastolic
    }
)


def covers(data: Iterable[str], data_class: str) -> bool:
    """Whether a grant of ``data`` covers a request for ``data_class``."""
    granted = set(data)
    return data_class in granted or (VITAL_SIGNS in granted and data_class in VITAL_SIGN_CODES)


@dataclass(frozen=True)
class Recorded:
    statement: ConsentStatement
    position: int  # journal sequence number or ledger index


class ConsentState:
    """Grants and withdrawals applied in log order."""

    def __init__(self) -> None:
        self._statements: dict[tuple[str, int], Recorded] = {}
        self._withdrawn: dict[tuple[str, int], Recorded] = {}  # grant -> its withdrawal

    def problem(self, statement: ConsentStatement) -> str | None:
        """Why ``statement`` cannot follow what was applied (a reason code), or None."""
        if (statement.patient_id, statement.seq) in self._statements:
            return "seq-taken"
        if statement.is_grant:
            return None
        assert statement.ends is not None
        ended = self._statements.get((statement.patient_id, statement.ends))
        if ended is None or not ended.statement.is_grant:
            return "no-such-grant"
        if (statement.patient_id, statement.ends) in self._withdrawn:
            return "already-withdrawn"
        return None

    def apply(self, statement: ConsentStatement, position: int) -> str | None:
        """Apply a statement recorded at ``position``; a reason code if it cannot apply (then
        it changes nothing)."""
        problem = self.problem(statement)
        if problem is not None:
            return problem
        recorded = Recorded(statement, position)
        self._statements[(statement.patient_id, statement.seq)] = recorded
        if not statement.is_grant:
            assert statement.ends is not None
            self._withdrawn[(statement.patient_id, statement.ends)] = recorded
        return None

    def next_seq(self, patient_id: str) -> int:
        taken = [seq for patient, seq in self._statements if patient == patient_id]
        return max(taken) + 1 if taken else 0

    def withdrawal_of(self, patient_id: str, seq: int) -> Recorded | None:
        return self._withdrawn.get((patient_id, seq))

    def grants(self, patient_id: str) -> list[Recorded]:
        """The patient's grants, withdrawn or not, in log order."""
        return sorted(
            (
                r
                for (p, _), r in self._statements.items()
                if p == patient_id and r.statement.is_grant
            ),
            key=lambda r: r.position,
        )

    def in_force(
        self,
        patient_id: str,
        grantee: Grantee,
        data_class: str,
        purpose: str,
        at_ms: int,
        action: str = "access",
    ) -> ConsentStatement | None:
        """The grant that allows this request now (the earliest, if several), or None."""
        for recorded in self.grants(patient_id):
            grant = recorded.statement
            if self.allows(grant, grantee, data_class, purpose, at_ms, action):
                return grant
        return None

    def allows(
        self,
        grant: ConsentStatement,
        grantee: Grantee,
        data_class: str,
        purpose: str,
        at_ms: int,
        action: str = "access",
    ) -> bool:
        """Whether ``grant``, applied here and not withdrawn, allows this request."""
        key = (grant.patient_id, grant.seq)
        return (
            self._statements.get(key) is not None
            and self._statements[key].statement == grant
            and key not in self._withdrawn
            and grant.is_grant
            and grant.grantee == grantee
            and action in grant.actions
            and purpose in grant.purpose
            and covers(grant.data, data_class)
            and grant.start_ms is not None
            and grant.start_ms <= at_ms
            and (grant.end_ms is None or at_ms < grant.end_ms)
        )

    def statement(self, patient_id: str, seq: int) -> ConsentStatement | None:
        recorded = self._statements.get((patient_id, seq))
        return None if recorded is None else recorded.statement
