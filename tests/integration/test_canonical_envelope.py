"""An attacker's re-encoded copy of a genuine message, sent first, through a real Mosquitto.

Before the canonical rule the first copy was logged and the device's genuine message then
became a sequence conflict. Now every copy is quarantined as malformed_cose and the genuine
message is the one recorded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from devices.publisher import readings_topic
from ingest.quarantine import Quarantine
from ingest.reasons import Reason
from ledger.entries import LedgerEntry
from tests.noncanonical import copies, signature_holds
from tests.servers import Mosquitto
from tests.stack import (
    RawPublisher,
    register_devices,
    settings_for,
    signed,
    start_ingest,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_copies_sent_first_are_quarantined_and_the_genuine_message_is_recorded(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str
) -> None:
    ((device_id, signer),) = register_devices(data_dir, 1).items()
    genuine = signed(device_id, signer, 0)
    forged = copies(genuine)  # what anyone who saw the genuine message can make of it
    assert all(signature_holds(c, signer.key) for c in forged.values())
    ingest = await start_ingest(settings_for(data_dir, mosquitto.port, topic_root))
    ledger, metrics = ingest.runtime.ledger, ingest.runtime.metrics
    topic = readings_topic(topic_root, device_id)
    publisher = RawPublisher(mosquitto.port)
    for copy in forged.values():
        publisher.publish(topic, copy)
    publisher.flush()
    await wait_until(
        lambda: metrics.rejected_count(Reason.MALFORMED_COSE) == len(forged),
        what="every copy refused",
    )
    publisher.publish(topic, genuine)  # the device's own message arrives last
    publisher.close()
    await wait_until(lambda: ledger.size == 2, what="the genuine reading logged")
    recorded = ledger.log.entry(1)
    await ingest.close()

    assert recorded is not None
    assert LedgerEntry.decode(recorded).body == genuine
    assert metrics.sample("vitaltrail_readings_accepted_total") == 1
    for reason in Reason:
        expected = len(forged) if reason is Reason.MALFORMED_COSE else 0
        assert metrics.rejected_count(reason) == expected, reason
    quarantine = Quarantine(data_dir / "quarantine.db", read_only=True)
    kept = {r.sha256: r.reason for r in quarantine.recent(100)}  # each copy, even if cut short
    quarantine.close()
    assert kept == {
        hashlib.sha256(copy).digest(): Reason.MALFORMED_COSE.value for copy in forged.values()
    }
