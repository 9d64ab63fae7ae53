"""Hostile leaves of the read side's kinds never stop the compliance check: each is a finding
(or, if it happens to be valid, judged like any other), and the check always returns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from access.compliance import check_compliance
from ledger.entries import EntryKind, LedgerEntry
from tests.access_helpers import NOW
from tests.access_hostile import hostile_cbor
from tests.hostile import FAST
from tests.test_access_consent_hostile import KEYS, RECORDED, SIGNED
from tests.test_access_directory_hostile import CHANGES
from tests.test_access_trail_hostile import EVENTS

READ_SIDE = [k for k in EntryKind if k >= EntryKind.PATIENT_KEY_REGISTERED]
VALID = [
    (EntryKind.PATIENT_KEY_REGISTERED, KEYS[0]),
    (EntryKind.CONSENT_SIGNED, SIGNED[0]),
    (EntryKind.CONSENT_RECORDED, RECORDED[0]),
    (EntryKind.ACCESS, EVENTS[0]),
    (EntryKind.DIRECTORY_CHANGE, CHANGES[0]),
]


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(READ_SIDE),
            hostile_cbor("read side", KEYS + SIGNED + RECORDED + EVENTS + CHANGES),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_check_returns_findings_whatever_the_leaves(
    leaves: list[tuple[EntryKind, bytes]],
) -> None:
    entries = [
        (i, LedgerEntry(kind, NOW, body).encode()) for i, (kind, body) in enumerate(VALID + leaves)
    ]
    report = check_compliance(entries)
    assert report.consents + report.accesses >= 3  # the valid prefix was judged
    assert report.directory_changes.total() >= 1
    assert len(report.findings) <= len(entries) * 8
