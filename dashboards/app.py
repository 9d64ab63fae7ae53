"""Build the FastAPI app from data sources; state lives on the app, never in globals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from dashboards.api import router
from dashboards.docs_page import add_offline_docs
from devices.registry import DeviceRegistry
from ingest.store import TimeSeriesStore
from ledger.ledger import LedgerReader


@dataclass
class DataSources:
    """What the app reads. Opened by the caller (the composition root); closed at shutdown."""

    ledger: Callable[[], LedgerReader]
    store: Callable[[], TimeSeriesStore]
    registry: Callable[[], DeviceRegistry]
    metrics: CollectorRegistry | None = None
    proof_cosignatures: int = 0  # witness cosignatures a served proof bundle carries, at least


def create_app(sources: DataSources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ledger = sources.ledger()
        app.state.store = sources.store()
        app.state.registry = sources.registry()
        app.state.metrics = sources.metrics
        app.state.proof_cosignatures = sources.proof_cosignatures
        try:
            yield
        finally:
            app.state.ledger.close()
            app.state.store.close()
            app.state.registry.close()

    app = FastAPI(
        title="vitaltrail",
        version="0.1.0",
        summary="Signed vital-sign readings, sealed into a verifiable ledger.",
        lifespan=lifespan,
        docs_url=None,  # served from the package below, not from a CDN
        redoc_url=None,
    )
    app.include_router(router)
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    add_offline_docs(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    return app
