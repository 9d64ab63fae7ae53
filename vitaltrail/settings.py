"""The one Settings object, read from the environment (VITALTRAIL_*) and command-line flags.

Only the composition root reads the environment; components take frozen config values.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from access.journal import JOURNAL_FILE
from clinical.alerts import DEFAULT_STALE_AFTER_MS, DeviceLimits
from clinical.news2 import DEFAULT_MAX_AGE_MS, MEASURED_LOINC, Parameter


class WitnessSetting(BaseModel):
    """A witness the ledger asks for cosignatures: where it listens, and its pinned key."""

    url: str  # submission prefix, e.g. http://127.0.0.1:7380
    key: str  # its verifier key, <name>+<hash>+<base64(0x04 || key)>


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VITALTRAIL_", frozen=True)

    data_dir: Path = Path("data")
    # Files several processes share, when not in the data directory (the compose deployment:
    # each ingestor has its own data dir; the registry and the ledger key are common).
    registry_file: Path | None = None
    # Each device's last message, battery and signature failures: written by every ingestor,
    # read by the API's alert engine and device route (one file all of them see, as the
    # registry; in this data directory when not set).
    device_status_file: Path | None = None
    ledger_key_file: Path | None = None
    access_journal_file: Path | None = None  # the API's journal, when not in this data directory
    # The ledger in PostgreSQL (postgresql://...), for several ingestors sharing one log;
    # unset: SQLite in the data directory.
    ledger_url: str | None = None
    # The time-series store in InfluxDB 1.x (http://host:8086); unset: SQLite in the data dir.
    influx_url: str | None = None
    influx_database: str = "vitaltrail"
    influx_token_file: Path | None = None  # InfluxDB 2 (v1-compatible API): its API token
    # Raw samples are kept this long; 1-minute aggregates beyond (for good).
    store_raw_retention_days: float = 14.0
    origin: str = "vitaltrail.local/ledger"  # the log's identity: checkpoint origin and key name

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt5: bool = True
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None  # a file, so the secret is in no environment
    mqtt_tls_ca: Path | None = None  # TLS to the broker, trusting this CA
    topic_root: str = "vitaltrail/v1"
    share_group: str = "ingest"
    client_id: str = "vitaltrail-ingest"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # HTTPS served by the API itself (PEM files; `deploy-init` writes them for compose): both
    # set, it serves TLS only on http_port; unset, plain HTTP (behind a TLS proxy, or loopback).
    http_tls_cert_file: Path | None = None
    http_tls_key_file: Path | None = None
    # The API's reads run on threads of their own (each with its own database connections),
    # off the event loop the ingestor may share; past api_max_pending_reads queued, 503.
    api_read_threads: int = 2
    api_max_pending_reads: int = 64
    api_read_nice: int = 10  # the read threads yield the CPU to ingest (Linux); 0: they do not
    # The FHIR observation index follows the ledger this often, so that a search finds it
    # nearly current (each search catches it up the rest of the way); 0: only on searches.
    fhir_index_follow_s: float = 2.0
    # Sign-in and the embedded issuer's endpoints (dashboards/auth_routes.py). public_url is
    # where browsers and apps reach this API (the issuer's iss, its token endpoint's aud);
    # unset: http://<http_host>:<http_port>. Proxies whose X-Forwarded-Proto/-For are believed
    # (uvicorn's forwarded_allow_ips): only they can say a request came over TLS.
    public_url: str | None = None
    http_trusted_proxies: str = "127.0.0.1"
    session_ttl_s: float = 43_200.0  # a browser session ends 12 h after sign-in, however used
    session_idle_s: float = 1_800.0  # ... or after 30 min without a request
    sign_in_attempts_per_address: int = 10  # sign-in attempts one client address may make
    sign_in_address_window_s: float = 300.0  # ... within this many seconds (then 429)

    # Who may read (issue 9). The API is an OAuth 2.0 resource server: tokens must name it in
    # `aud`, and come from the embedded issuer (its key in the data directory; its `iss` is
    # issuer_url, default the public URL: base_url) and/or from an external OpenID
    # provider named by its issuer URL (its discovery document and JWK set are fetched).
    api_audience: str = "vitaltrail-api"
    trust_embedded_issuer: bool = True
    issuer_url: str | None = None
    oidc_issuer: str | None = None
    # Where its discovery document is fetched, when not <issuer>/.well-known/openid-configuration
    # (the API reaching the provider over a private network, by another name than browsers).
    oidc_discovery_url: str | None = None
    oidc_ca_file: Path | None = None  # the CA (PEM) its HTTPS is checked against; unset: system's
    oidc_roles_claim: str = "roles"  # where its tokens carry roles, dotted: realm_access.roles
    oidc_require_at_jwt: bool = True  # False for a provider that writes typ JWT (Keycloak)
    # A role the provider gives clients acting for themselves (SMART Backend Services) whose
    # `sub` is not their client id (Keycloak's service accounts): their tokens are the app's.
    oidc_app_role: str | None = None
    oidc_start_timeout_s: float = 60.0  # how long the API waits at start for the provider
    metrics_token_file: Path | None = None  # a Prometheus scrape token /metrics also accepts
    # NEWS2 (clinical.news2): how old a value may be and still be scored as current; older, it
    # is shown as stale and the score is partial. Defaults: news2's (15 min; 12 h).
    news2_vital_max_age_s: float = 900.0  # each wearable vital
    news2_documented_max_age_s: float = 43_200.0  # documented consciousness and oxygen
    # The alert engine (clinical.alert_engine) in the API's process: how often it evaluates
    # every patient with data, new readings or not (stale vitals fire on the clock); 0: never.
    alerts_interval_s: float = 5.0
    # No reading of a measured vital for this long raises its stale alert; None: the per-vital
    # limits of clinical.alerts (pulse and SpO2 5 min ... blood pressure 60 min).
    alerts_stale_after_s: float | None = None
    # Technical alerts (clinical.alerts.DeviceLimits): a device silent this long, a reported
    # battery at or below this, this many signature failures within the window.
    device_silent_after_s: float = 120.0  # at the least: a device is silent after 3 missed reports
    device_silent_unknown_after_s: float = 1800.0  # while its reporting interval is not known
    battery_low_pct: int = 20
    signature_failures_alert: int = 3
    signature_failures_window_s: float = 600.0

    # FHIR subscriptions (R5 Backport IG on R4; fhirserver/subscription_*.py): how many each
    # caller and the server may hold, how often new readings are matched, and whether rest-hook
    # endpoints may be plain http on this machine's loopback (a local relay; off: https only).
    fhir_subscriptions_per_principal: int = 10
    fhir_subscriptions_max: int = 1000
    fhir_subscription_poll_s: float = 0.5
    fhir_subscription_http_loopback: bool = False

    # The quarantine's budget: of each refused message at most this many bytes are kept
    # (its length and SHA-256 always), at most this many MiB of records (the oldest go
    # first), and no record longer than this many days.
    quarantine_keep_bytes: int = 1024
    quarantine_max_mib: float = 128.0
    quarantine_max_age_days: float = 30.0

    batch_max: int = 2000
    check_workers: int = 2  # processes verifying signatures (one per core); 0: on the writer thread
    check_worker_max_rss_mib: float = 192.0  # a worker past this is replaced (decoder leaks)
    seal_interval_s: float = 1.0
    seal_every: int = 1000  # entries waiting that trigger a block before the interval ends
    log_level: str = "INFO"

    # The ledger's witnesses (JSON in VITALTRAIL_WITNESSES) and how many cosignatures a proof
    # bundle the API serves must carry (0: bundles use the latest block, cosigned or not).
    witnesses: list[WitnessSetting] = []
    witnesses_file: Path | None = None  # the same list as a JSON file (`deploy-init` writes one)
    witness_quorum: int = 0
    # `vitaltrail witness`: this process as a witness for other logs.
    witness_name: str = "vitaltrail.local/witness"
    witness_host: str = "127.0.0.1"
    witness_port: int = 7380

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.db"

    def mqtt_password(self) -> str | None:
        return self.mqtt_password_file.read_text().strip() if self.mqtt_password_file else None

    def influx_token(self) -> str | None:
        return self.influx_token_file.read_text().strip() if self.influx_token_file else None

    def witness_settings(self) -> list[WitnessSetting]:
        if self.witnesses_file is None:
            return list(self.witnesses)
        loaded = json.loads(self.witnesses_file.read_text())
        return [*self.witnesses, *(WitnessSetting.model_validate(w) for w in loaded)]

    @property
    def ledger_location(self) -> Path | str:
        return self.ledger_url or self.ledger_path

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def quarantine_path(self) -> Path:
        return self.data_dir / "quarantine.db"

    @property
    def registry_path(self) -> Path:
        return self.registry_file or self.data_dir / "registry.db"

    @property
    def ledger_key_path(self) -> Path:
        return self.ledger_key_file or self.data_dir / "keys" / "ledger.key"

    @property
    def witness_dir(self) -> Path:
        return self.data_dir / "witness"

    @property
    def access_db_path(self) -> Path:
        """Users, apps and care teams (access/): who may sign in and whom they may read."""
        return self.data_dir / "access.db"

    @property
    def access_journal_path(self) -> Path:
        """Consents, patient keys and access events, durable before data leaves; the ingestor
        copies them into the ledger (access/journal.py)."""
        return self.access_journal_file or self.data_dir / JOURNAL_FILE

    @property
    def documented_path(self) -> Path:
        """What staff document for NEWS2 (clinical/documented.py): append-only, kept for good."""
        return self.data_dir / "documented.db"

    @property
    def alerts_path(self) -> Path:
        """The open alerts and their append-only history (clinical/alert_store.py)."""
        return self.data_dir / "alerts.db"

    @property
    def device_status_path(self) -> Path:
        """Each device's last message, battery and signature failures (ingest/device_status.py)."""
        return self.device_status_file or self.data_dir / "device-status.db"

    @property
    def device_limits(self) -> DeviceLimits:
        return DeviceLimits(
            silent_ms=round(self.device_silent_after_s * 1000),
            silent_unknown_ms=round(self.device_silent_unknown_after_s * 1000),
            battery_low_pct=self.battery_low_pct,
            signature_failures=self.signature_failures_alert,
            signature_window_ms=round(self.signature_failures_window_s * 1000),
        )

    @property
    def news2_max_age_ms(self) -> dict[Parameter, int]:
        """The NEWS2 age limits per parameter (the SpO2 scale does not expire)."""
        vital = round(self.news2_vital_max_age_s * 1000)
        documented = round(self.news2_documented_max_age_s * 1000)
        return {p: vital if p in MEASURED_LOINC else documented for p in DEFAULT_MAX_AGE_MS}

    @property
    def alerts_stale_after_ms(self) -> dict[Parameter, int]:
        """The alert engine's stale limit per measured vital."""
        if self.alerts_stale_after_s is None:
            return dict(DEFAULT_STALE_AFTER_MS)
        return dict.fromkeys(MEASURED_LOINC, round(self.alerts_stale_after_s * 1000))

    @property
    def fhir_index_path(self) -> Path:
        """The FHIR observation index (fhirserver/index.py): derived from the ledger, caught
        up before each search; safe to delete (it is built again)."""
        return self.data_dir / "fhir-index.db"

    @property
    def fhir_subscriptions_path(self) -> Path:
        """FHIR subscriptions, their recent events and the delivery cursor."""
        return self.data_dir / "fhir-subscriptions.db"

    @property
    def sessions_path(self) -> Path:
        """Browser sessions (dashboards/session_store.py): revoked at sign-out, expiring."""
        return self.data_dir / "sessions.db"

    @property
    def base_url(self) -> str:
        """Where this API is reached from outside, without a trailing slash."""
        scheme = "https" if self.http_tls_cert_file else "http"
        return (self.public_url or f"{scheme}://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def embedded_issuer(self) -> str:
        """The embedded issuer's URL: the `iss` of the tokens it signs."""
        return (self.issuer_url or self.base_url).rstrip("/")

    @property
    def token_key_path(self) -> Path:
        """The embedded issuer's signing key (access.issuer.Issuer.open's default)."""
        return self.data_dir / "keys" / "token-issuer.jwk"

    def metrics_token(self) -> str | None:
        return self.metrics_token_file.read_text().strip() if self.metrics_token_file else None

    @property
    def simulator_dir(self) -> Path:
        return self.data_dir / "simulator"
