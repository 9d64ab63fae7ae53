"""The telemedicine and dashboard API. Routes are thin: they read, shape, and return.

Each route declares its access rule (``dashboards.route_rules``); a patient-data route takes a
gate (``dashboards.access_deps``) whose decision is recorded in the access trail before the
handler runs, and serves only what that decision permits.

Every read of the ledger, the store or the registry runs on the app's
:class:`~dashboards.reads.ReadPool` (threads with their own connections), never on the event
loop, which an ingestor may share. Every number a request carries has explicit bounds, so a
value out of range is a 422 that says which bound, never a 500 from the database below.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest

from dashboards.access_deps import (
    PathPatient,
    PathPatientCode,
    ReadingPatient,
    VisiblePatients,
)
from dashboards.bundles import (
    NoSuchReading,
    NotSealed,
    RecordedReading,
    proof_bundle_for,
    recorded_reading,
)
from dashboards.reads import Readers, ReadPool, read_pool
from dashboards.refusals import BUSY, error
from dashboards.route_rules import Admin, Authenticated, PatientData, Public, access
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

router = APIRouter()

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_SERIES_BUCKETS = 10_000
# The bounds of the numbers a request may carry. Times: milliseconds since the epoch, up to
# the end of year 9999. Entry indexes, tree sizes and block heights: far beyond any log, and
# well inside the 64-bit integers SQLite and PostgreSQL store.
MAX_TIME_MS = 253_402_300_799_999
MAX_INDEX = 2**62
MAX_BUCKET_S = 86_400


ReadsDep = Annotated[ReadPool, Depends(read_pool)]
PatientId = Annotated[str, Path(pattern=ID_PATTERN)]
EntryIndex = Annotated[int, Path(ge=0, le=MAX_INDEX, description="a ledger entry index")]
TimeMs = Annotated[
    int | None, Query(ge=0, le=MAX_TIME_MS, description="milliseconds since the Unix epoch")
]
TreeSize = Annotated[int, Query(ge=1, le=MAX_INDEX, description="a tree size (entries)")]


def _invalid(parameter: str, message: str, value: object) -> RequestValidationError:
    """A 422 for a rule across query parameters, in the shape FastAPI gives a bound's."""
    detail = {"type": "value_error", "loc": ("query", parameter), "msg": message, "input": value}
    return RequestValidationError([detail])


@router.get("/api/v1/patients", tags=["dashboard"])
@access(PatientData("vital-signs"))
async def patients(listing: VisiblePatients) -> list[PatientVitals]:
    """The patients the caller may see (their care teams', their own, or those who consented
    to the app), each with the latest value of each vital."""
    grouped: dict[str, list[VitalValue]] = {}
    for v in listing.latest:
        grouped.setdefault(v.patient_id, []).append(VitalValue.of(v))
    return [PatientVitals(patient_id=p, vitals=vs) for p, vs in grouped.items()]


@router.get(
    "/api/v1/patients/{patient_id}/vitals",
    tags=["telemedicine"],
    responses={404: error("no readings of this patient that the caller may see")},
)
@access(PatientData("vital-signs"))
async def latest_vitals(
    patient_id: PatientId, reads: ReadsDep, decision: PathPatient
) -> PatientVitals:
    """A patient's latest vitals."""
    vitals = [
        v for v in await reads.run(lambda r: r.store.latest(patient_id)) if decision.shows(v.code)
    ]
    if not vitals:
        raise HTTPException(404, f"no readings for patient {patient_id}")
    return PatientVitals(patient_id=patient_id, vitals=[VitalValue.of(v) for v in vitals])


@router.get("/api/v1/patients/{patient_id}/vitals/{code}", tags=["telemedicine"])
@access(PatientData("vital-signs"))
async def vital_series(
    patient_id: PatientId,
    code: Annotated[str, Path(pattern=r"^[0-9]{1,7}-[0-9]$", description="LOINC code")],
    reads: ReadsDep,
    decision: PathPatientCode,
    start_ms: TimeMs = None,
    end_ms: TimeMs = None,
    bucket_s: Annotated[float, Query(gt=0, le=MAX_BUCKET_S)] = 60,
) -> Series:
    """One vital of one patient over ``[start_ms, end_ms)`` (default: the last hour), downsampled."""
    end = end_ms if end_ms is not None else int(time.time() * 1000)
    start = start_ms if start_ms is not None else max(0, end - 3_600_000)
    bucket_ms = max(1, int(bucket_s * 1000))
    if start >= end:
        raise _invalid("start_ms", "start_ms must be before end_ms", start_ms)
    if (end - start) / bucket_ms > MAX_SERIES_BUCKETS:
        message = f"at most {MAX_SERIES_BUCKETS} buckets per query: widen bucket_s"
        raise _invalid("bucket_s", message, bucket_s)
    buckets = await reads.run(lambda r: r.store.series(patient_id, code, start, end, bucket_ms))
    return Series(
        patient_id=patient_id,
        code=code,
        bucket_ms=bucket_ms,
        points=[
            SeriesPoint(start_ms=b.start_ms, mean=b.mean, low=b.low, high=b.high, count=b.count)
            for b in buckets
        ],
    )


def _recorded(r: Readers, index: int) -> RecordedReading:
    try:
        return recorded_reading(r.ledger, index)
    except NoSuchReading as exc:
        raise HTTPException(404, str(exc)) from exc


def _reading(r: Readers, index: int) -> ReadingOut:
    recorded = _recorded(r, index)
    decoded = recorded.reading
    device = r.registry.get(decoded.device_id)
    latest = r.ledger.blocks.latest()
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
    "/api/v1/readings/{index}", tags=["telemedicine"], responses={404: error("no such reading")}
)
@access(PatientData("readings"))
async def reading(index: EntryIndex, reads: ReadsDep, decision: ReadingPatient) -> ReadingOut:
    """A reading by id (its ledger index), decoded from the signed message the device sent."""
    return await reads.run(lambda r: _reading(r, index))


def _proof_bundle(r: Readers, index: int, cosignatures: int) -> str:
    try:
        return proof_bundle_for(r.ledger, index, cosignatures).to_json()
    except NoSuchReading as exc:
        raise HTTPException(404, str(exc)) from exc
    except NotSealed as exc:
        raise HTTPException(409, str(exc)) from exc


@router.get(
    "/api/v1/readings/{index}/proof",
    tags=["telemedicine"],
    responses={
        200: {"content": {"application/json": {}}, "description": "a proof bundle"},
        404: error("no such reading"),
        409: error("not sealed in a block with enough witness cosignatures yet"),
    },
)
@access(PatientData("proofs"))
async def proof_bundle(
    index: EntryIndex, reads: ReadsDep, request: Request, decision: ReadingPatient
) -> Response:
    """The offline proof bundle of a reading: check it with ``vitaltrail verify``.

    It proves the reading against the latest block that carries the configured number of
    witness cosignatures (409 until one does)."""
    bundle = await reads.run(
        lambda r: _proof_bundle(r, index, request.app.state.proof_cosignatures)
    )
    return Response(bundle, media_type="application/json")


def _checkpoint(r: Readers) -> str:
    block = r.ledger.blocks.latest()
    if block is None:
        raise HTTPException(404, "no block has been sealed yet")
    return r.ledger.blocks.cosigned_note(block)


@router.get(
    "/api/v1/checkpoint",
    tags=["telemedicine"],
    response_class=PlainTextResponse,
    responses={404: error("no block has been sealed yet"), 503: error(BUSY)},
)
@access(Public())
async def checkpoint(reads: ReadsDep) -> str:
    """The latest signed checkpoint (a C2SP signed note, with any witness cosignatures)."""
    return await reads.run(_checkpoint)


def _block(r: Readers, height: int) -> BlockOut:
    found = r.ledger.blocks.get(height)
    if found is None:
        raise HTTPException(404, f"no block {height}")
    return BlockOut(
        height=found.height,
        tree_size=found.tree_size,
        sealed_at_ms=found.sealed_at_ms,
        prev_hash=base64.b64encode(found.prev_hash).decode(),
        checkpoint=r.ledger.blocks.cosigned_note(found),
    )


@router.get("/api/v1/blocks/{height}", tags=["audit"], responses={404: error("no such block")})
@access(Authenticated())
async def block(
    height: Annotated[int, Path(ge=0, le=MAX_INDEX, description="a block height")],
    reads: ReadsDep,
) -> BlockOut:
    """A sealed block: its checkpoint and its link to the block before."""
    return await reads.run(lambda r: _block(r, height))


def _consistency(r: Readers, old: int, new: int) -> list[bytes]:
    if new > r.ledger.log.stored_size():
        raise HTTPException(404, f"the log holds fewer than {new} entries")
    return r.ledger.log.consistency_proof(old, new)


@router.get(
    "/api/v1/consistency",
    tags=["audit"],
    responses={404: error("the log holds fewer entries than new")},
)
@access(Authenticated())
async def consistency(old: TreeSize, new: TreeSize, reads: ReadsDep) -> ConsistencyProofOut:
    """Proof that the tree of size ``new`` extends the tree of size ``old`` (RFC 9162 2.1.4)."""
    if old > new:
        raise _invalid("old", "old must not be larger than new", old)
    proof = await reads.run(lambda r: _consistency(r, old, new))
    return ConsistencyProofOut(
        old_size=old, new_size=new, proof=[base64.b64encode(h).decode() for h in proof]
    )


def _ledger_status(r: Readers) -> LedgerStatus:
    block = r.ledger.blocks.latest()
    return LedgerStatus(
        origin=block.checkpoint.origin if block else None,
        tree_size=r.ledger.log.stored_size(),
        sealed_size=block.tree_size if block else 0,
        blocks=block.height + 1 if block else 0,
    )


@router.get("/api/v1/ledger", tags=["telemedicine"])
@access(Authenticated())
async def ledger_status(reads: ReadsDep) -> LedgerStatus:
    return await reads.run(_ledger_status)


@router.get("/metrics", include_in_schema=False)
@access(Admin(scrape_token=True))
async def metrics(request: Request) -> Response:
    """The ingestor's metrics (when it shares this process) and the API's own."""
    body = b"".join(generate_latest(registry) for registry in request.app.state.metrics)
    return Response(body, media_type="text/plain; version=0.0.4")


@router.get("/healthz", include_in_schema=False)
@access(Public())
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
