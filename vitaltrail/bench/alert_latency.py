"""How long a threshold-crossing reading takes to reach a ward page as an alert, while the
ingestor takes a steady stream of other readings.

The ingestor runs as `vitaltrail ingest --serve-api` runs it (the web app on its event loop,
the alert engine in the app), as in `vitaltrail bench api-load`; a publisher process sends
pre-signed heart rates of ``devices`` other patients at ``rate`` readings/s (none of them
crosses a threshold). A clinician whose care team is the whole ward holds the alert stream
open (``GET /api/v1/alerts/stream``). ``probes`` times one more patient's band publishes a
heart rate of 135 (pulse scores 3: an alert), then, once the alert has arrived, 75 (it
resolves): each probe's time from publish to the ``raised`` event at the client, and from
publish to durable in the ingestor, are the figures.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devices.cose import sign1
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Reading, Sample, encode_reading
from devices.vitals import HEART_RATE
from vitaltrail.bench.api_load import clinician_headers
from vitaltrail.bench.ingest import (
    IngestProcess,
    _publish,
    _settings,
    _write_batch,
    percentile,
    presign,
)
from vitaltrail.bench.raw_publisher import publish_paced
from vitaltrail.bench.sse_reader import Message, SseReader
from vitaltrail.mosquitto import Mosquitto, free_port

PROBE_DEVICE = "probe"  # its patient: patient-probe (bench.ingest._settings names them)
PROBE_PATIENT = f"patient-{PROBE_DEVICE}"
CROSSING_HR, NORMAL_HR = 135.0, 75.0
STREAM = "/api/v1/alerts/stream"


@dataclass(frozen=True)
class AlertLatency:
    """Figures of one run (milliseconds)."""

    rate: float  # background readings/s asked for
    achieved_rate: float  # background readings/s the publisher sent
    devices: int  # background patients (one band each)
    probes: int
    received: int  # probes whose alert arrived within ``timeout_s``
    publish_to_alert_ms: tuple[float, ...]  # each probe's, in order
    publish_to_durable_ms: tuple[float, ...]  # the probe readings' ingest latency
    durable_to_alert_ms: tuple[float, ...]  # the alert's own part: engine, stream, trail
    p50_ms: float
    p90_ms: float
    max_ms: float
    within_2s: int  # probes whose alert arrived within 2 s of publish

    def summary(self) -> str:
        durable = percentile(self.publish_to_durable_ms, 50) if self.publish_to_durable_ms else 0
        own = percentile(self.durable_to_alert_ms, 50) if self.durable_to_alert_ms else 0
        return (
            f"{self.received}/{self.probes} alerts at {self.achieved_rate:,.0f} readings/s:"
            f" publish -> SSE alert p50 {self.p50_ms:.0f} ms, p90 {self.p90_ms:.0f} ms,"
            f" max {self.max_ms:.0f} ms, {self.within_2s} within 2 s"
            f" (publish -> durable p50 {durable:.0f} ms; durable -> alert p50 {own:.0f} ms)"
        )


def _probe_message(signer: DeviceSigner, seq: int, hr: float) -> tuple[str, bytes]:
    sample = Sample(HEART_RATE.code, HEART_RATE.unit, hr, int(time.time() * 1000))
    payload = sign1(signer, encode_reading(Reading(PROBE_DEVICE, seq, (sample,))))
    return PROBE_DEVICE, payload


def _arrival(messages: Sequence[Message], after: int, event: str) -> float | None:
    """When the probe patient's first ``event`` after message ``after`` arrived, if it has."""
    for m in messages[after:]:
        if m.event == "alert":
            data = m.json()
            if data["event"] == event and data["alert"]["patient_id"] == PROBE_PATIENT:
                return m.arrived
    return None


def _arrived(after: int, event: str, messages: Sequence[Message]) -> bool:
    return _arrival(messages, after, event) is not None


def measure_alert_latency(
    *,
    probes: int = 20,
    rate: float = 5000.0,
    devices: int = 200,
    timeout_s: float = 10.0,
    warm_up_s: float = 10.0,
    work: Path | None = None,
) -> AlertLatency:
    """Run the bench once (about ``probes`` x 1.5 s plus start-up); see the module's doc.
    ``warm_up_s``: the background runs this long before the first probe (the ingestor's first
    seconds at a new rate are not what a ward sees)."""
    with tempfile.TemporaryDirectory(prefix="vitaltrail-bench-alerts-") as tmp:
        return _run(probes, rate, devices, timeout_s, warm_up_s, work or Path(tmp))


def _run(
    probes: int, rate: float, devices: int, timeout_s: float, warm_up_s: float, work: Path
) -> AlertLatency:
    broker = Mosquitto(work / "broker").start()
    try:
        seconds = warm_up_s + 10 + probes * 2.0  # the background outlasts the probes
        signers, background = presign(devices, int(rate * seconds))
        probe = DeviceSigner.generate()
        settings = _settings(work, broker.port, "alerts", {**signers, PROBE_DEVICE: probe}, None)
        settings = settings.model_copy(update={"http_port": free_port()})
        patients = [f"patient-{d}" for d in signers]
        headers = clinician_headers(settings, [*patients, PROBE_PATIENT])
        ingest = IngestProcess(settings, work, "alerts", serve_api=True).start()
        published: dict[str, object] = {}

        def publish_background() -> None:
            batch = _write_batch(work / "background.pkl", settings.topic_root, background)
            published.update(_publish(broker.port, batch, rate, work))

        loader = threading.Thread(target=publish_background, daemon=True)
        loader.start()
        time.sleep(warm_up_s)
        reader = SseReader(f"http://127.0.0.1:{settings.http_port}{STREAM}", headers)
        sent: list[tuple[int, int, float | None]] = []  # crossing readings: seq, ns, arrived
        try:
            if reader.status != 200:
                raise RuntimeError(f"the stream refused the bench: {reader.status} {reader.body!r}")
            topic = readings_topic(settings.topic_root, PROBE_DEVICE)
            seq = 0
            for _ in range(probes):
                # A crossing that missed the timeout counts as lost; the resolution is waited
                # for longer, so that a late alert is never taken for the next probe's.
                for hr, event, wait_s in (
                    (CROSSING_HR, "raised", timeout_s),
                    (NORMAL_HR, "resolved", 3 * timeout_s),
                ):
                    seen = len(reader.messages)
                    _, payload = _probe_message(probe, seq, hr)
                    sent_ns, _ = publish_paced(broker.port, f"probe-{seq}", [(topic, payload)], 0)
                    got = reader.wait_for(functools.partial(_arrived, seen, event), wait_s)
                    arrived = _arrival(got, seen, event)
                    if hr == CROSSING_HR:
                        sent.append((seq, sent_ns[0], arrived))
                    seq += 1
                    time.sleep(0.2)
        finally:
            reader.close()
        loader.join(seconds + 120)
        result = ingest.finish()
    finally:
        broker.stop()
    durable = {s: ns for d, s, _, ns in result["durable"] if d == PROBE_DEVICE}
    to_durable = tuple((durable[s] - ns) / 1e6 for s, ns, _ in sent if s in durable)
    latencies = [at * 1000 - ns / 1e6 for _, ns, at in sent if at is not None]
    own = tuple(at * 1000 - durable[s] / 1e6 for s, _, at in sent if at and s in durable)
    background_sent = published.get("sent_ns")
    achieved = 0.0
    if isinstance(background_sent, list) and len(background_sent) > 1:
        span_s = (background_sent[-1] - background_sent[0]) / 1e9
        achieved = (len(background_sent) - 1) / span_s if span_s > 0 else 0.0
    return AlertLatency(
        rate=rate,
        achieved_rate=achieved,
        devices=devices,
        probes=probes,
        received=len(latencies),
        publish_to_alert_ms=tuple(latencies),
        publish_to_durable_ms=to_durable,
        durable_to_alert_ms=own,
        p50_ms=percentile(latencies, 50) if latencies else 0.0,
        p90_ms=percentile(latencies, 90) if latencies else 0.0,
        max_ms=max(latencies, default=0.0),
        within_2s=sum(1 for ms in latencies if ms < 2000),
    )


def as_dict(figures: AlertLatency) -> dict[str, object]:
    """For a JSON report."""
    return dataclasses.asdict(figures)
