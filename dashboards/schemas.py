"""The API's response models, split from the storage types so either can change alone."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field

from devices.vitals import BY_CODE
from ingest.store import LatestVital


class VitalValue(BaseModel):
    code: str = Field(description="LOINC code")
    name: str
    unit: str = Field(description="UCUM unit")
    value: float
    time_ms: int = Field(description="sample time, milliseconds since the Unix epoch")
    entry_index: int = Field(description="ledger entry (reading id) holding the signed reading")

    @classmethod
    def of(cls, v: LatestVital) -> Self:
        known = BY_CODE.get(v.code)
        return cls(
            code=v.code,
            name=known.name if known else v.code,
            unit=v.unit,
            value=v.value,
            time_ms=v.time_ms,
            entry_index=v.entry_index,
        )


class PatientVitals(BaseModel):
    patient_id: str
    vitals: list[VitalValue]


class SeriesPoint(BaseModel):
    start_ms: int
    mean: float
    low: float
    high: float
    count: int


class Series(BaseModel):
    patient_id: str
    code: str
    bucket_ms: int
    points: list[SeriesPoint]


class SampleOut(BaseModel):
    code: str
    unit: str
    value: float
    time_ms: int


class ReadingOut(BaseModel):
    id: int = Field(description="the reading's ledger entry index")
    device_id: str
    patient_id: str | None
    seq: int
    logged_at_ms: int
    samples: list[SampleOut]
    sealed: bool = Field(description="true once a signed checkpoint covers this entry")
    proof_url: str


class LedgerStatus(BaseModel):
    origin: str | None
    tree_size: int
    sealed_size: int
    blocks: int


class BlockOut(BaseModel):
    height: int
    tree_size: int
    sealed_at_ms: int
    prev_hash: str = Field(description="base64 hash of the previous block (zeros for block 0)")
    checkpoint: str = Field(
        description="C2SP signed note: the ledger's signature, then cosignatures"
    )


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes in order")
