"""The consent store: where the API records a patient's grants and withdrawals, and asks them.

A statement is committed to the access journal (access.journal) before the call returns, so a
withdrawal holds for the very next request, and the ingestor copies it into the ledger with the
next batch. Every check runs inside the journal's write transaction: two statements under one
number, or a withdrawal racing its own grant, cannot both pass. A refusal raises
:class:`~access.errors.ConsentRefused` with a reason code, counted in :attr:`refused`:

``malformed``          not a signed statement, or not a valid one
``unknown-key``        the COSE kid names no registered patient key
``revoked-key``        the patient's key was revoked
``wrong-patient``      the key speaks for another patient than the statement names
``bad-signature``      the signature does not verify under the patient's key
``future-time``        the statement is dated more than :data:`MAX_CLOCK_SKEW_MS` ahead
``invalid-recorder``   a staff statement without a valid recorder, role or reason
``seq-taken``          the patient's number is taken by another statement
``no-such-grant``      a withdrawal of a grant the patient never made
``already-withdrawn``  a withdrawal of a grant already withdrawn
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from access.consent import (
    KINDS,
    Consent,
    ConsentStatement,
    Grantee,
    RecordedConsent,
    SignedConsent,
    decode_consent,
)
from access.consent_state import ConsentState
from access.errors import ConsentError, ConsentRefused, JournalConflict
from access.journal import Journal, Row
from access.patient_keys import PatientKeys
from ledger.entries import EntryKind

log = logging.getLogger("vitaltrail.access.consent")

MAX_CLOCK_SKEW_MS = 5 * 60 * 1000


class ConsentStore:
    """Records consent statements durably and answers which are in force."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.refused: Counter[str] = Counter()
        self.keys = PatientKeys(journal, self.refused)  # its refusals counted here too

    def record_signed(self, message: bytes, now_ms: int) -> Row:
        """Record a statement the patient signed (a COSE_Sign1 from the patient's app)."""
        try:
            signed = SignedConsent.decode(message)
        except ConsentError as exc:
            raise self._refuse("malformed", str(exc)) from exc

        def check() -> None:
            registration = self.keys.active(signed.kid)
            if registration is None:
                if self.keys.patient_of(signed.kid) is None:
                    raise self._refuse("unknown-key", "no patient key has this kid")
                raise self._refuse("revoked-key", "the patient's key is revoked")
            if registration.patient_id != signed.statement.patient_id:
                raise self._refuse("wrong-patient", "the key speaks for another patient")
            try:
                signed.verify(registration.key)
            except ConsentError as exc:
                raise self._refuse("bad-signature", str(exc)) from exc
            self._check_statement(signed.statement, now_ms)

        return self._append(signed, check, now_ms)

    def record_for_patient(
        self, statement: ConsentStatement, recorder: str, role: str, reason: str, now_ms: int
    ) -> Row:
        """Record a statement staff made on the patient's behalf, naming who and why."""
        recorded = RecordedConsent(statement, recorder, role, reason)
        try:
            recorded.body  # noqa: B018  (validates recorder, role and reason)
        except ConsentError as exc:
            raise self._refuse("invalid-recorder", str(exc)) from exc
        return self._append(recorded, lambda: self._check_statement(statement, now_ms), now_ms)

    def _append(self, consent: Consent, check: Callable[[], None], now_ms: int) -> Row:
        statement = consent.statement
        try:
            row = self._journal.append(
                lambda _: (
                    consent.kind,
                    statement.ledger_key,
                    consent.body,
                    (statement.patient_id,),
                ),
                now_ms,
                check,
            )
        except JournalConflict as exc:
            raise self._refuse("seq-taken", str(exc)) from exc
        log.info("recorded consent statement %s (journal %d)", consent.kind.name.lower(), row.seq)
        return row

    def _check_statement(self, statement: ConsentStatement, now_ms: int) -> None:
        if statement.time_ms > now_ms + MAX_CLOCK_SKEW_MS:
            raise self._refuse("future-time", "the statement is dated in the future")
        state = self.state(statement.patient_id)
        problem = state.problem(statement)
        if problem == "seq-taken":
            earlier = self._journal.by_key(statement.ledger_key)
            if earlier is not None and _same_statement(earlier, statement):
                return  # a redelivery: the journal returns the earlier row
        if problem is not None:
            raise self._refuse(problem, f"statement {statement.seq} of the patient")

    def _refuse(self, reason: str, detail: str) -> ConsentRefused:
        self.refused[reason] += 1
        log.debug("consent statement refused: %s (%s)", reason, detail)
        return ConsentRefused(reason, detail)

    def statements(self, patient_id: str) -> list[tuple[Row, Consent]]:
        """The patient's consent statements, in the order they were recorded."""
        rows = self._journal.of_kinds(KINDS, patient_id)
        return [(row, decode_consent(row.kind, row.body)) for row in rows]

    def state(self, patient_id: str) -> ConsentState:
        """The patient's statements replayed (journal sequence numbers as positions)."""
        state = ConsentState()
        for row, consent in self.statements(patient_id):
            state.apply(consent.statement, row.seq)
        return state

    def next_seq(self, patient_id: str) -> int:
        """The number the patient's next statement takes."""
        return self.state(patient_id).next_seq(patient_id)

    def in_force(
        self, patient_id: str, grantee: Grantee, data_class: str, purpose: str, at_ms: int
    ) -> ConsentStatement | None:
        """The grant that lets ``grantee`` access ``data_class`` of the patient for ``purpose``
        at ``at_ms``, as of every statement recorded so far; None: refuse."""
        return self.state(patient_id).in_force(patient_id, grantee, data_class, purpose, at_ms)


def _same_statement(row: Row, statement: ConsentStatement) -> bool:
    if row.kind not in (EntryKind.CONSENT_SIGNED, EntryKind.CONSENT_RECORDED):
        return False
    try:
        return decode_consent(row.kind, row.body).statement == statement
    except ConsentError:
        return False
