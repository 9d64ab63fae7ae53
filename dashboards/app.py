"""Build the FastAPI app from data sources; state lives on the app, never in globals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from clinical.alert_store import AlertStore
from clinical.alerts import DEFAULT_STALE_AFTER_MS, AlertConfig, DeviceLimits
from clinical.documented import DocumentedStore
from clinical.news2 import DEFAULT_MAX_AGE_MS, Parameter
from dashboards.access_deps import AccessMetrics, AccessServices, caller, enforce
from dashboards.access_log import router as access_log_router
from dashboards.alert_hub import FOLLOW_S, HUB, SERVER_EXITING, AlertHub, StreamLimits
from dashboards.alert_routes import router as alert_router
from dashboards.alert_routes import run_alerts
from dashboards.alert_stream import router as alert_stream_router
from dashboards.api import router
from dashboards.auth_routes import WebAuth, add_auth
from dashboards.consent_routes import consent_router
from dashboards.device_routes import router as device_router
from dashboards.docs_page import add_offline_docs
from dashboards.documented_routes import router as documented_router
from dashboards.fhir_answers import add_fhir_errors
from dashboards.fhir_routes import follow_ledger
from dashboards.fhir_routes import router as fhir_router
from dashboards.fhir_subscription_routes import SubscriptionSetup, add_subscriptions
from dashboards.ledger_keys_routes import router as ledger_keys_router
from dashboards.method_not_allowed import allow_every_method
from dashboards.news2_history_routes import router as news2_history_router
from dashboards.reads import Readers, ReadMetrics, ReadPool
from dashboards.route_rules import Public, access, declare_path, document_rules
from dashboards.ward_patient_page import add_ward_patient_page
from dashboards.ward_routes import router as ward_router
from devices.registry import DeviceRegistry
from fhirserver.index import IndexReader, ObservationIndex
from ingest.device_status import DeviceStatusStore
from ingest.store import TimeSeriesStore, wall_clock_ms
from ledger.ledger import LedgerReader


@dataclass
class DataSources:
    """What the app reads. Opened by the caller (the composition root); closed at shutdown."""

    ledger: Callable[[], LedgerReader]
    store: Callable[[], TimeSeriesStore]
    registry: Callable[[], DeviceRegistry]
    access: AccessServices  # token check, policy, trail: closed with the app
    fhir_index: Path  # the FHIR observation index's file (fhirserver.index), built as it goes
    documented: Path  # what staff document for NEWS2 (clinical.documented), append-only
    alerts: Path  # the open alerts and their history (clinical.alert_store)
    device_status: Path  # each device's technical state, kept by the ingestor
    token_endpoint: str | None = None  # where apps get tokens (the FHIR CapabilityStatement)
    metrics: CollectorRegistry | None = None
    proof_cosignatures: int = 0  # witness cosignatures a served proof bundle carries, at least
    ledger_key_file: Path | None = None  # the ledger's note verifier key (ledger.pub), served
    witness_keys: tuple[str, ...] = ()  # the witnesses' verifier keys, served with it
    read_threads: int = 2  # threads running the API's reads, each with its own connections
    max_pending_reads: int = 64  # reads running or queued; past this, 503
    read_nice: int = 10  # the read threads' niceness above the process's (Linux); 0: none
    fhir_index_follow_s: float = 2.0  # how often the FHIR index follows the ledger; 0: never
    auth: WebAuth | None = None  # sign-in and the embedded issuer's endpoints; None: neither
    subscriptions: SubscriptionSetup | None = None  # FHIR subscriptions; None: not offered
    news2_max_age_ms: Mapping[Parameter, int] = field(default_factory=lambda: DEFAULT_MAX_AGE_MS)
    alerts_interval_s: float = 5.0  # how often the alert engine evaluates the ward; 0: never
    alerts_stale_after_ms: Mapping[Parameter, int] = field(
        default_factory=lambda: DEFAULT_STALE_AFTER_MS
    )
    clock_ms: Callable[[], int] = wall_clock_ms  # the alert engine's and the alert routes' now
    device_limits: DeviceLimits = field(default_factory=DeviceLimits)  # technical alerts
    alerts_follow_s: float = FOLLOW_S  # how often the engine looks for new readings; 0: never
    alert_streams: StreamLimits = field(default_factory=StreamLimits)  # the alerts' SSE

    def open_readers(self) -> Readers:
        """One reader thread's own connections (all or none)."""
        with ExitStack() as opened:
            ledger = self.ledger()
            opened.callback(ledger.close)
            store = self.store()
            opened.callback(store.close)
            registry = self.registry()
            opened.callback(registry.close)
            observations = IndexReader(self.fhir_index)
            opened.callback(observations.close)
            documented = DocumentedStore(self.documented)
            opened.callback(documented.close)
            alerts = AlertStore(self.alerts)
            opened.callback(alerts.close)
            device_status = DeviceStatusStore(self.device_status)
            opened.pop_all()
        return Readers(ledger, store, registry, observations, documented, alerts, device_status)


def create_app(sources: DataSources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api_metrics = CollectorRegistry()
        reads = ReadPool(
            sources.open_readers,
            threads=sources.read_threads,
            max_pending=sources.max_pending_reads,
            metrics=ReadMetrics(api_metrics),
            nice=sources.read_nice,
        )
        app.state.reads = reads
        app.state.fhir_index = await asyncio.to_thread(ObservationIndex, sources.fhir_index)
        app.state.token_endpoint = sources.token_endpoint
        app.state.access = sources.access
        app.state.consent_services = sources.access.consent
        app.state.access_metrics = AccessMetrics(api_metrics)
        app.state.metrics = [r for r in (sources.metrics, api_metrics) if r is not None]
        app.state.proof_cosignatures = sources.proof_cosignatures
        app.state.ledger_key_file = sources.ledger_key_file
        app.state.witness_keys = sources.witness_keys
        app.state.news2_max_age_ms = sources.news2_max_age_ms
        app.state.clock_ms = sources.clock_ms
        app.state.device_limits = sources.device_limits
        hub = AlertHub(sources.alert_streams)
        setattr(app.state, HUB, hub)
        setattr(app.state, SERVER_EXITING, [hub.close])  # open streams end before uvicorn waits
        tasks: list[asyncio.Task[None]] = []
        try:
            await reads.run(lambda _: None)  # the data is there to read: fail at start, not later
            if sources.fhir_index_follow_s > 0:
                tasks.append(
                    asyncio.create_task(
                        follow_ledger(reads, app.state.fhir_index, sources.fhir_index_follow_s)
                    )
                )
            if sources.alerts_interval_s > 0:
                config = AlertConfig(
                    sources.alerts_stale_after_ms,
                    news2_max_age_ms=sources.news2_max_age_ms,
                    devices=sources.device_limits,
                )
                tasks.append(
                    asyncio.create_task(
                        run_alerts(
                            reads,
                            config,
                            sources.alerts_interval_s,
                            sources.clock_ms,
                            follow_s=sources.alerts_follow_s,
                            hub=hub,
                        )
                    )
                )
            yield
        finally:
            hub.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(reads.close)
            app.state.fhir_index.close()
            sources.access.close()

    app = FastAPI(
        title="vitaltrail",
        version="0.1.0",
        summary="Signed vital-sign readings, sealed into a verifiable ledger.",
        lifespan=lifespan,
        dependencies=[Depends(enforce)],  # every route's declared rule, deny by default
        docs_url=None,  # served from the package below, not from a CDN
        redoc_url=None,
    )
    app.include_router(router)
    app.include_router(access_log_router)
    app.include_router(consent_router(caller))
    app.include_router(fhir_router)
    if sources.subscriptions is not None:  # its engine starts and stops with the app
        add_subscriptions(app, sources.subscriptions)
    app.include_router(documented_router)
    app.include_router(ward_router)
    app.include_router(alert_stream_router)  # before alert_router: /alerts/stream is no alert id
    app.include_router(alert_router)
    app.include_router(device_router)
    app.include_router(ledger_keys_router)
    app.include_router(news2_history_router)
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    add_offline_docs(app)
    add_ward_patient_page(app, static)
    for path in ("/static", "/docs", app.openapi_url or "/openapi.json"):
        declare_path(app, path, Public())  # assets and the API's description: no patient data
    document_rules(app)
    allow_every_method(app)
    add_fhir_errors(app)  # after the handlers it wraps
    add_auth(app, sources)

    @app.get("/", include_in_schema=False)
    @access(Public())
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    return app
