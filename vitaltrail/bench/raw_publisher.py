"""A lean MQTT 5 QoS 1 publisher for load generation: pre-encoded packets, written in chunks.

The load generator shares the machine's two cores with the broker and the ingestor, so it must
cost as little as possible: paho spends ~150 µs of Python per message, this ~10. It speaks just
enough MQTT 5 to connect, publish at QoS 1 and count PUBACKs; it is a benchmark tool, not a client.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Sequence


class RawMqttError(Exception):
    """The broker refused the connection or a publish."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def connect_packet(client_id: str, keepalive_s: int = 60) -> bytes:
    variable = _utf8("MQTT") + bytes([5, 0x02]) + struct.pack(">H", keepalive_s) + b"\x00"
    body = variable + _utf8(client_id)
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: str, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH, QoS 1, no properties."""
    body = _utf8(topic) + struct.pack(">H", packet_id) + b"\x00" + payload
    return b"\x32" + varint(len(body)) + body


class AckCounter:
    """Counts PUBACKs in a byte stream that may split packets anywhere."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.acked = 0
        self.refused = 0

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        while len(buf) - pos >= 2:
            length, shift, i = 0, 0, pos + 1
            while True:
                if i >= len(buf):
                    del buf[:pos]
                    return
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            if len(buf) - i < length:
                break
            kind = buf[pos] >> 4
            if kind == 4:  # PUBACK: a reason code >= 0x80 means refused
                self.acked += 1
                if length >= 3 and buf[i + 2] >= 0x80:
                    self.refused += 1
            elif kind == 14:
                raise RawMqttError("the broker disconnected the publisher")
            pos = i + length
        del buf[:pos]


def publish_paced(
    port: int,
    client_id: str,
    messages: Sequence[tuple[str, bytes]],
    rate: float,
    window: int = 10_000,
) -> tuple[list[int], float]:
    """Publish at ``rate`` msg/s (0: as fast as possible) with at most ``window`` unacknowledged.

    Returns each message's send time (ns since the epoch) and the seconds until the last PUBACK.
    """
    with socket.create_connection(("127.0.0.1", port)) as sock:  # closed on errors too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id))
        connack = sock.recv(64)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise RawMqttError(f"connection refused: {connack!r}")
        sock.setblocking(False)
        acks = AckCounter()
        sent_ns: list[int] = []
        start = time.perf_counter()
        chunk_s = 0.005
        n = len(messages)
        while len(sent_ns) < n:
            due = n if rate <= 0 else min(n, int((time.perf_counter() - start) * rate) + 1)
            due = min(due, acks.acked + window)
            if due > len(sent_ns):
                first = len(sent_ns)
                packets = b"".join(
                    publish_packet(topic, (first + k) % 65535 + 1, payload)
                    for k, (topic, payload) in enumerate(messages[first:due])
                )
                now = time.time_ns()
                sent_ns.extend([now] * (due - first))
                _send_all(sock, packets, acks)
            _read_acks(sock, acks, timeout_s=0 if rate <= 0 and due < n else chunk_s)
        while acks.acked < n:
            _read_acks(sock, acks, timeout_s=1.0)
        elapsed = time.perf_counter() - start
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    if acks.refused:
        raise RawMqttError(f"the broker refused {acks.refused} messages")
    return sent_ns, elapsed


def _send_all(sock: socket.socket, data: bytes, acks: AckCounter) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
            view = view[sent:]
        except BlockingIOError:
            _read_acks(sock, acks, timeout_s=0.01)


def _read_acks(sock: socket.socket, acks: AckCounter, timeout_s: float) -> None:
    readable, _, _ = select.select([sock], [], [], timeout_s)
    while readable:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not data:
            raise RawMqttError("the broker closed the connection")
        acks.feed(data)
        readable, _, _ = select.select([sock], [], [], 0)
