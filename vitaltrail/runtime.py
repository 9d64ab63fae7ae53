"""Wiring: build the ingestor, the web app and their data sources from Settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from access.apps import AppStore
from access.care_teams import CareTeamStore
from access.consent_store import ConsentStore
from access.errors import ProviderError
from access.issuer import load_or_create_signing_key
from access.journal import Journal
from access.jwks import FetchJson, HttpJson, StaticKeys
from access.policy import Policy
from access.tokens import TokenVerifier, TrustedIssuer, trust_discovered
from access.trail import AccessTrail
from access.users import UserStore
from dashboards.access_deps import AccessServices
from dashboards.app import DataSources, create_app
from dashboards.consent_routes import ConsentServices
from dashboards.fhir_subscription_routes import SubscriptionSetup
from devices.registry import DeviceRegistry
from fhirserver.new_observations import IndexedObservations
from fhirserver.subscription_engine import EngineConfig
from fhirserver.subscriptions import SubscriptionLimits
from ingest.access_copy import JournalSource
from ingest.check_pool import CheckPool
from ingest.checks import Limits, RegistryCache
from ingest.device_status import DeviceStatusStore
from ingest.influx_store import InfluxStore
from ingest.ingestor import IngestConfig, Ingestor
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import SourceConfig
from ingest.pipeline import BatchResult, Pipeline
from ingest.quarantine import Quarantine, QuarantineBudget
from ingest.sqlite_store import SqliteStore
from ingest.store import TimeSeriesStore
from ledger.blocks import Block
from ledger.cosignature import CosignatureVerifier
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.witnessing import WitnessClient, WitnessEndpoint
from vitaltrail.services import EmbeddedServer, TlsFiles, http_server
from vitaltrail.settings import Settings
from vitaltrail.web_auth import issuer_config, web_auth

log = logging.getLogger("vitaltrail.api")


@dataclass
class IngestRuntime:
    ingestor: Ingestor
    ledger: Ledger
    registry: DeviceRegistry
    store: TimeSeriesStore
    quarantine: Quarantine
    metrics: IngestMetrics
    journal: JournalSource
    device_status: DeviceStatusStore

    def close(self) -> None:
        self.ingestor.close()
        for part in (
            self.ledger,
            self.store,
            self.quarantine,
            self.registry,
            self.journal,
            self.device_status,
        ):
            part.close()


def source_config(settings: Settings) -> SourceConfig:
    return SourceConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=settings.client_id,
        mqtt5=settings.mqtt5,
        topic_root=settings.topic_root,
        share_group=settings.share_group if settings.mqtt5 else None,
        username=settings.mqtt_username,
        password=settings.mqtt_password(),
        tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
        max_packet_bytes=Limits().max_packet_bytes,
    )


def quarantine_budget(settings: Settings) -> QuarantineBudget:
    return QuarantineBudget(
        keep_bytes=settings.quarantine_keep_bytes,
        max_bytes=int(settings.quarantine_max_mib * 2**20),
        max_age_s=settings.quarantine_max_age_days * 86_400,
    )


def build_ingest(
    settings: Settings,
    metrics: IngestMetrics | None = None,
    *,
    on_durable: Callable[[BatchResult, int], None] | None = None,
    on_sealed: Callable[[Block, int], None] | None = None,
) -> IngestRuntime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signer = load_or_create_signer(settings.ledger_key_path, settings.origin)
    ledger = Ledger(settings.ledger_location, signer)
    store = open_store(settings)
    quarantine = Quarantine(settings.quarantine_path, budget=quarantine_budget(settings))
    registry = DeviceRegistry(settings.registry_path)
    metrics = metrics or IngestMetrics()
    journal = JournalSource(settings.access_journal_path)
    device_status = DeviceStatusStore(settings.device_status_path)
    pipeline = Pipeline(
        ledger,
        store,
        quarantine,
        RegistryCache(registry.by_kid),
        registry,
        topic_root=settings.topic_root,
        journal=journal,
        device_status=device_status,
    )
    config = IngestConfig(
        source=source_config(settings),
        batch_max=settings.batch_max,
        seal_interval_s=settings.seal_interval_s,
        seal_every=settings.seal_every,
    )
    pool = None
    if settings.check_workers > 0:
        pool = CheckPool(
            settings.check_workers,
            settings.registry_path,
            settings.topic_root,
            max_worker_rss_mib=settings.check_worker_max_rss_mib,
        )
    witnesses = None
    if configured := settings.witness_settings():
        witnesses = WitnessClient(
            [WitnessEndpoint(w.url, CosignatureVerifier.parse(w.key)) for w in configured]
        )
    ingestor = Ingestor(
        config,
        pipeline,
        metrics,
        on_durable=on_durable,
        on_sealed=on_sealed,
        check_pool=pool,
        witnesses=witnesses,
    )
    return IngestRuntime(
        ingestor, ledger, registry, store, quarantine, metrics, journal, device_status
    )


def open_store(settings: Settings, *, read_only: bool = False) -> TimeSeriesStore:
    """InfluxDB when ``influx_url`` is set, else SQLite in the data directory."""
    retention_ms = int(settings.store_raw_retention_days * 86_400_000)
    if settings.influx_url:
        return InfluxStore(
            settings.influx_url,
            settings.influx_database,
            read_only=read_only,
            token=settings.influx_token(),
            raw_retention_ms=retention_ms,
        )
    return SqliteStore(settings.store_path, read_only=read_only, raw_retention_ms=retention_ms)


def api_server(
    settings: Settings, runtime: IngestRuntime | None = None, *, gc_freeze: bool = False
) -> EmbeddedServer:
    """The web app over the data directory, to serve on the running event loop; beside an
    ingestor it also serves the ingestor's metrics. The commands freeze their start-up heap
    (``gc_freeze``, see ``EmbeddedServer``); a test serving from its own process does not."""
    app = create_app(data_sources(settings, runtime.metrics if runtime else None))
    return http_server(
        app,
        settings.http_host,
        settings.http_port,
        trusted_proxies=settings.http_trusted_proxies,
        tls=TlsFiles.of(settings.http_tls_cert_file, settings.http_tls_key_file),
        gc_freeze=gc_freeze,
    )


def data_sources(settings: Settings, metrics: IngestMetrics | None = None) -> DataSources:
    return DataSources(
        ledger=lambda: LedgerReader(settings.ledger_location),
        store=lambda: open_store(settings, read_only=True),
        registry=lambda: DeviceRegistry(settings.registry_path),
        access=access_services(settings),
        fhir_index=settings.fhir_index_path,
        documented=settings.documented_path,
        alerts=settings.alerts_path,
        device_status=settings.device_status_path,
        device_limits=settings.device_limits,
        alerts_interval_s=settings.alerts_interval_s,
        alerts_stale_after_ms=settings.alerts_stale_after_ms,
        token_endpoint=issuer_config(settings).token_endpoint
        if settings.trust_embedded_issuer
        else None,
        metrics=metrics.registry if metrics else None,
        proof_cosignatures=settings.witness_quorum,
        ledger_key_file=settings.ledger_key_path.with_suffix(".pub"),
        witness_keys=tuple(w.key for w in settings.witness_settings()),
        read_threads=settings.api_read_threads,
        max_pending_reads=settings.api_max_pending_reads,
        read_nice=settings.api_read_nice,
        fhir_index_follow_s=settings.fhir_index_follow_s,
        auth=web_auth(settings),
        news2_max_age_ms=settings.news2_max_age_ms,
        subscriptions=subscription_setup(settings),
    )


def subscription_setup(settings: Settings) -> SubscriptionSetup:
    """FHIR subscriptions: in the data directory, the engine following the ledger."""
    return SubscriptionSetup(
        path=settings.fhir_subscriptions_path,
        base_url=settings.base_url,
        source=lambda index: IndexedObservations(index, settings.ledger_location),
        limits=SubscriptionLimits(allow_http_loopback=settings.fhir_subscription_http_loopback),
        engine=EngineConfig(poll_s=settings.fhir_subscription_poll_s),
        per_owner=settings.fhir_subscriptions_per_principal,
        total=settings.fhir_subscriptions_max,
        embedded_issuer=issuer_config(settings).issuer if settings.trust_embedded_issuer else None,
    )


def token_verifier(
    settings: Settings,
    http: FetchJson | None = None,
    users: UserStore | None = None,
    apps: AppStore | None = None,
) -> TokenVerifier:
    """The API's token check: the embedded issuer (by its key in the data directory; a token
    of a user ``users`` says is disabled, or of an app ``apps`` says is, is refused at once) and the external OpenID provider,
    if one is named (by discovery, at start: a provider that cannot be reached within
    ``oidc_start_timeout_s`` stops the start rather than refusing every request later)."""
    trusted: list[TrustedIssuer] = []
    if settings.trust_embedded_issuer:
        key = load_or_create_signing_key(settings.token_key_path)
        keys = StaticKeys({"keys": [key.as_dict(private=False)]})
        trusted.append(
            TrustedIssuer(
                issuer_config(settings).issuer,
                keys,
                user_disabled=users.is_disabled if users is not None else None,
                app_disabled=apps.is_disabled if apps is not None else None,
            )
        )
    if settings.oidc_issuer:
        trusted.append(trust_provider(settings, http or HttpJson(ca_file=settings.oidc_ca_file)))
    if not trusted:
        raise ValueError("no token issuer is trusted: set oidc_issuer or trust_embedded_issuer")
    return TokenVerifier(settings.api_audience, trusted)


def trust_provider(
    settings: Settings,
    fetch: FetchJson,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TrustedIssuer:
    """The external OpenID provider, found by discovery; tried again (1, 2, 4 ... 10 s apart)
    while it cannot be reached - it may be starting beside the API - until
    ``oidc_start_timeout_s`` has passed, then a ``ProviderError`` naming the last failure."""
    issuer = settings.oidc_issuer
    if issuer is None:
        raise ValueError("no OpenID provider is named (oidc_issuer)")
    deadline = clock() + settings.oidc_start_timeout_s
    delay = 1.0
    while True:
        try:
            return trust_discovered(
                issuer,
                fetch,
                discovery_url=settings.oidc_discovery_url,
                require_at_jwt=settings.oidc_require_at_jwt,
                roles_claim=tuple(settings.oidc_roles_claim.split(".")),
                app_role=settings.oidc_app_role,
            )
        except ProviderError as exc:
            if clock() + delay > deadline:
                raise ProviderError(
                    f"the OpenID provider {issuer} could not be had within "
                    f"{settings.oidc_start_timeout_s:g} s: {exc}"
                ) from exc
            log.warning("the OpenID provider is not there yet (%s); again in %g s", exc, delay)
            sleep(delay)
            delay = min(delay * 2, 10.0)


def access_services(settings: Settings) -> AccessServices:
    """What the API decides and records by: tokens, care teams, consents, the access trail."""
    journal = Journal(settings.access_journal_path)
    consents = ConsentStore(journal)
    care_teams = CareTeamStore(settings.access_db_path)
    users = UserStore(settings.access_db_path)
    apps = AppStore(settings.access_db_path)
    # the external provider's discovery and JWK set; closed with the rest
    http = HttpJson(ca_file=settings.oidc_ca_file)

    def patient_of(user: str) -> str | None:
        found = users.get(user)
        return found.patient_id if found is not None and not found.disabled else None

    policy = Policy(care_teams.patients_of, consents.in_force, patient_of_user=patient_of)
    trail = AccessTrail(journal, consents)
    return AccessServices(
        verifier=token_verifier(settings, http, users, apps),
        policy=policy,
        trail=trail,
        journal=journal,
        care_teams=care_teams,
        users=users,
        metrics_token=settings.metrics_token(),
        consent=ConsentServices(consents, apps, trail),
        closers=[http.close],
    )
