"""The ledger key of each entry kind the read side owns (kinds 4-9), for the auditor.

The ledger's auditor checks that every entry is stored under the key its kind's rule gives
(one entry per key, ever) but knows only its own kinds; `vitaltrail audit` hands it these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from access.consent import decode_consent
from access.directory_changes import DirectoryChange
from access.patient_keys import PatientKeyStatement
from access.trail import AccessEvent
from ledger.appends import EntryKey
from ledger.entries import EntryKind, LedgerEntry


def _patient_key(entry: LedgerEntry) -> EntryKey:
    return PatientKeyStatement.from_entry(entry).ledger_key


def _consent(entry: LedgerEntry) -> EntryKey:
    return decode_consent(entry.kind, entry.body).statement.ledger_key


def _access(entry: LedgerEntry) -> EntryKey:
    return AccessEvent.decode(entry.body).ledger_key


def _directory_change(entry: LedgerEntry) -> EntryKey:
    return DirectoryChange.decode(entry.body).ledger_key


KEY_RULES: Mapping[EntryKind, Callable[[LedgerEntry], EntryKey]] = {
    EntryKind.PATIENT_KEY_REGISTERED: _patient_key,
    EntryKind.PATIENT_KEY_REVOKED: _patient_key,
    EntryKind.CONSENT_SIGNED: _consent,
    EntryKind.CONSENT_RECORDED: _consent,
    EntryKind.ACCESS: _access,
    EntryKind.DIRECTORY_CHANGE: _directory_change,
}
