"""The error tree of consent, patient keys and the access trail.

::

    AccessRecordError            a consent, patient key or access record cannot be accepted
    ├── PatientKeyError          bytes that are not a patient key statement  (access.patient_keys)
    ├── ConsentError             bytes that are not a consent statement       (access.consent)
    ├── AccessEventError         bytes that are not an access event           (access.trail)
    ├── ConsentRefused           a well-formed statement the store refuses, with a reason code
    └── JournalError             the journal could not commit: serve nothing  (access.journal)
        └── JournalConflict      the key is recorded with other bytes

Each decoder of outside bytes raises only its own type (:func:`devices.boundary.decoder`).
"""

from __future__ import annotations


class AccessRecordError(Exception):
    """A consent, patient key or access record that cannot be accepted."""


class PatientKeyError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded patient key statement."""


class ConsentError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded consent statement."""


class AccessEventError(AccessRecordError):
    """Bytes that are not a well-formed, deterministically encoded access event."""


class ConsentRefused(AccessRecordError):
    """A statement the consent store does not record; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class JournalError(AccessRecordError):
    """The journal did not commit the record: the caller must not serve the data (fail closed)."""


class JournalConflict(JournalError):
    """The record's key is already taken by other bytes (a reused consent sequence number)."""
