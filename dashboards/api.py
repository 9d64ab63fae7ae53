"""The telemedicine and dashboard API. Routes are thin: they read, shape, and return."""

from __future__ import annotations

import base64
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest

from dashboards.bundles import (
    NoSuchReading,
    NotSealed,
    RecordedReading,
    proof_bundle_for,
    recorded_reading,
)
from dashboards.schemas import (
    BlockOut,
    ConsistencyProofOut,
    LedgerStatus,
    PatientVitals,
    ReadingOut,
    SampleOut,
    Series,
    SeriesPoint,
    VitalValue,
)
from devices.registry import DeviceRegistry
from devices.vitals import BY_CODE
from ingest.store import LatestVital, TimeSeriesStore
from ledger.ledger import LedgerReader

router = APIRouter()

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_SERIES_BUCKETS = 10_000


def _ledger(request: Request) -> LedgerReader:
    ledger: LedgerReader = request.app.state.ledger
    return ledger


def _store(request: Request) -> TimeSeriesStore:
    store: TimeSeriesStore = request.app.state.store
    return store


def _registry(request: Request) -> DeviceRegistry:
    registry: DeviceRegistry = request.app.state.registry
    return registry


LedgerDep = Annotated[LedgerReader, Depends(_ledger)]
StoreDep = Annotated[TimeSeriesStore, Depends(_store)]
RegistryDep = Annotated[DeviceRegistry, Depends(_registry)]
PatientId = Annotated[str, Path(pattern=ID_PATTERN)]
EntryIndex = Annotated[int, Path(ge=0, le=2**62)]


def _vital(v: LatestVital) -> VitalValue:
    known = BY_CODE.get(v.code)
    return VitalValue(
        code=v.code,
        name=known.name if known else v.code,
        unit=v.unit,
        value=v.value,
        time_ms=v.time_ms,
        entry_index=v.entry_index,
    )


@router.get("/api/v1/patients", tags=["dashboard"])
async def patients(store: StoreDep) -> list[PatientVitals]:
    """Every patient with the latest value of each vital."""
    grouped: dict[str, list[VitalValue]] = {}
    for v in store.latest():
        grouped.setdefault(v.patient_id, []).append(_vital(v))
    return [PatientVitals(patient_id=p, vitals=vs) for p, vs in grouped.items()]


@router.get("/api/v1/patients/{patient_id}/vitals", tags=["telemedicine"])
async def latest_vitals(patient_id: PatientId, store: StoreDep) -> PatientVitals:
    """A patient's latest vitals."""
    vitals = store.latest(patient_id)
    if not vitals:
        raise HTTPException(404, f"no readings for patient {patient_id}")
    return PatientVitals(patient_id=patient_id, vitals=[_vital(v) for v in vitals])


@router.get("/api/v1/patients/{patient_id}/vitals/{code}", tags=["telemedicine"])
async def vital_series(
    patient_id: PatientId,
    code: Annotated[str, Path(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code")],
    store: StoreDep,
    start_ms: Annotated[int | None, Query(ge=0)] = None,
    end_ms: Annotated[int | None, Query(ge=0)] = None,
    bucket_s: Annotated[float, Query(gt=0, le=86_400)] = 60,
) -> Series:
    """One vital of one patient over ``[start_ms, end_ms)`` (default: the last hour), downsampled."""
    end = end_ms if end_ms is not None else int(time.time() * 1000)
    start = start_ms if start_ms is not None else end - 3_600_000
    bucket_ms = max(1, int(bucket_s * 1000))
    if start >= end:
        raise HTTPException(422, "start_ms must be before end_ms")
    if (end - start) / bucket_ms > MAX_SERIES_BUCKETS:
        raise HTTPException(422, f"at most {MAX_SERIES_BUCKETS} buckets per query: widen bucket_s")
    buckets = store.series(patient_id, code, start, end, bucket_ms)
    return Series(
        patient_id=patient_id,
        code=code,
        bucket_ms=bucket_ms,
        points=[
            SeriesPoint(start_ms=b.start_ms, mean=b.mean, low=b.low, high=b.high, count=b.count)
            for b in buckets
        ],
    )


def _recorded(ledger: LedgerReader, index: int) -> RecordedReading:
    try:
        return recorded_reading(ledger, index)
    except NoSuchReading as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/api/v1/readings/{index}", tags=["telemedicine"])
async def reading(index: EntryIndex, ledger: LedgerDep, registry: RegistryDep) -> ReadingOut:
    """A reading by id (its ledger index), decoded from the signed message the device sent."""
    recorded = _recorded(ledger, index)
    decoded = recorded.reading
    device = registry.get(decoded.device_id)
    latest = ledger.blocks.latest()
    return ReadingOut(
        id=index,
        device_id=decoded.device_id,
        patient_id=device.patient_id if device else None,
        seq=decoded.seq,
        logged_at_ms=recorded.entry.logged_at_ms,
        samples=[
            SampleOut(code=s.code, unit=s.unit, value=s.value, time_ms=s.time_ms)
            for s in decoded.samples
        ],
        sealed=latest is not None and index < latest.tree_size,
        proof_url=f"/api/v1/readings/{index}/proof",
    )


@router.get(
    "/api/v1/readings/{index}/proof",
    tags=["telemedicine"],
    responses={
        200: {"content": {"application/json": {}}, "description": "a proof bundle"},
        409: {"description": "not sealed in a block yet"},
    },
)
async def proof_bundle(index: EntryIndex, ledger: LedgerDep, request: Request) -> Response:
    """The offline proof bundle of a reading: check it with ``vitaltrail verify``.

    It proves the reading against the latest block that carries the configured number of
    witness cosignatures (409 until one does)."""
    try:
        bundle = proof_bundle_for(ledger, index, request.app.state.proof_cosignatures)
    except NoSuchReading as exc:
        raise HTTPException(404, str(exc)) from exc
    except NotSealed as exc:
        raise HTTPException(409, str(exc)) from exc
    return Response(bundle.to_json(), media_type="application/json")


@router.get("/api/v1/checkpoint", tags=["telemedicine"], response_class=PlainTextResponse)
async def checkpoint(ledger: LedgerDep) -> str:
    """The latest signed checkpoint (a C2SP signed note, with any witness cosignatures)."""
    block = ledger.blocks.latest()
    if block is None:
        raise HTTPException(404, "no block has been sealed yet")
    return ledger.blocks.cosigned_note(block)


@router.get("/api/v1/blocks/{height}", tags=["audit"])
async def block(height: Annotated[int, Path(ge=0, le=2**62)], ledger: LedgerDep) -> BlockOut:
    """A sealed block: its checkpoint and its link to the block before."""
    found = ledger.blocks.get(height)
    if found is None:
        raise HTTPException(404, f"no block {height}")
    return BlockOut(
        height=found.height,
        tree_size=found.tree_size,
        sealed_at_ms=found.sealed_at_ms,
        prev_hash=base64.b64encode(found.prev_hash).decode(),
        checkpoint=ledger.blocks.cosigned_note(found),
    )


@router.get("/api/v1/consistency", tags=["audit"])
async def consistency(
    old: Annotated[int, Query(ge=1, le=2**62)],
    new: Annotated[int, Query(ge=1, le=2**62)],
    ledger: LedgerDep,
) -> ConsistencyProofOut:
    """Proof that the tree of size ``new`` extends the tree of size ``old`` (RFC 9162 2.1.4)."""
    if old > new:
        raise HTTPException(422, "old must not be larger than new")
    if new > ledger.log.stored_size():
        raise HTTPException(404, f"the log holds fewer than {new} entries")
    proof = ledger.log.consistency_proof(old, new)
    return ConsistencyProofOut(
        old_size=old, new_size=new, proof=[base64.b64encode(h).decode() for h in proof]
    )


@router.get("/api/v1/ledger", tags=["telemedicine"])
async def ledger_status(ledger: LedgerDep) -> LedgerStatus:
    block = ledger.blocks.latest()
    return LedgerStatus(
        origin=block.checkpoint.origin if block else None,
        tree_size=ledger.log.stored_size(),
        sealed_size=block.tree_size if block else 0,
        blocks=block.height + 1 if block else 0,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    body = generate_latest(registry) if registry is not None else b""
    return Response(body, media_type="text/plain; version=0.0.4")


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
