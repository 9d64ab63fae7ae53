"""A data directory with a registered ward, recorded readings and sealed blocks - no broker needed."""

from __future__ import annotations

from pathlib import Path

from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import Sample
from devices.registry import DeviceRegistry
from devices.vitals import BODY_TEMPERATURE
from ingest.mqtt_source import InboundMessage
from tests.stack import now_ms, signed, vitals
from vitaltrail.runtime import build_ingest
from vitaltrail.settings import Settings


def populate(
    data_dir: Path, patients: int = 3, readings: int = 5, blocks: int = 1, **settings_: object
) -> Settings:
    """``readings`` per patient, sealed in ``blocks`` blocks."""
    settings = Settings(data_dir=data_dir, check_workers=0, **settings_)  # type: ignore[arg-type]
    runtime = build_ingest(settings)
    registry = DeviceRegistry(settings.registry_path)
    signers = {f"patient-{i}-band": DeviceSigner.generate() for i in range(patients)}
    for device_id, signer in signers.items():
        registry.register(device_id, device_id.removesuffix("-band"), signer.key)
    registry.close()
    t = now_ms() - readings * 1000
    batches: list[list[InboundMessage]] = [[] for _ in range(blocks)]
    for seq in range(readings):
        batch = batches[seq * blocks // readings]
        for device_id, signer in signers.items():
            temperature = Sample(BODY_TEMPERATURE.code, BODY_TEMPERATURE.unit, 36.9, t + seq * 1000)
            samples = (*vitals(t + seq * 1000, hr=70 + seq), temperature)
            batch.append(
                InboundMessage(
                    readings_topic(settings.topic_root, device_id),
                    signed(device_id, signer, seq, samples),
                    0,
                    1,
                    0,
                    0,
                )
            )
    for batch in batches:
        runtime.ingestor.pipeline.process(batch, now_ms())
        runtime.ingestor.pipeline.seal(now_ms())
    runtime.close()
    return settings
