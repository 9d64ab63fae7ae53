"""The benchmark's own tools: the lean publisher's packets and PUBACK counting."""

from __future__ import annotations

import pytest

from vitaltrail.bench.ingest import percentile
from vitaltrail.bench.raw_publisher import AckCounter, RawMqttError, publish_packet, varint


@pytest.mark.parametrize(
    ("n", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16384, b"\x80\x80\x01")]
)
def test_varint(n: int, encoded: bytes) -> None:
    assert varint(n) == encoded


def test_publish_packet_layout() -> None:
    packet = publish_packet("a/b", 7, b"xyz")
    assert packet == b"\x32\x0b\x00\x03a/b\x00\x07\x00xyz"


def test_ack_counter_handles_split_packets_and_refusals() -> None:
    stream = b"\x40\x02\x00\x01" + b"\x40\x03\x00\x02\x87" + b"\x40\x02\x00\x03"
    counter = AckCounter()
    for i in range(len(stream)):
        counter.feed(stream[i : i + 1])
    assert (counter.acked, counter.refused) == (3, 1)
    with pytest.raises(RawMqttError):
        counter.feed(b"\xe0\x00")


def test_percentile() -> None:
    assert percentile(list(range(100)), 50) == 50
    assert percentile(list(range(100)), 99) == 99
