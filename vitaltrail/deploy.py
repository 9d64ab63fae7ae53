"""`vitaltrail deploy-init`: the first-run secrets of a docker-compose deployment.

Run by the compose file's ``setup`` service. Every secret goes to the directory of the one
service that uses it - each a volume of its own in docker-compose.yml, mounted by that service
only (tests/test_compose.py checks the mounts against :data:`CONSUMERS`):

=================  ===================================================  =====================
directory          what                                                 mounted by
=================  ===================================================  =====================
``ca/``            the deployment CA's private key (and ``ca.crt``)     setup only
``broker/``        ``certs/server.{crt,key}``, ``certs/ca.crt``,          mosquitto
                   ``dynamic-security.json`` (password hashes, roles)
``ledger/``        ``ledger.key``: the log's signing key                the ingestors
``witness/``       ``witness.key``: the witness's                       the witness
``<ingestor>/``    ``mqtt.password`` (its own broker identity), pgpass  that ingestor
``api/``           ``pgpass``, ``tls/server.{crt,key}`` (its HTTPS)     the api
``keycloak/``      ``tls/server.{crt,key}``: the OpenID provider's      keycloak
``handout/``       ``device-passwords.json``: devices' clear passwords  device provisioning
``simulator/``     the simulated devices' signing keys                  the simulator
``public/``        ``ca.crt``, ``ledger.pub``, ``witness.pub``           anyone
=================  ===================================================  =====================

Each step keeps what an earlier run made, so running it again is harmless. A device's broker
password exists in clear only in the hand-out file, written once when the device is added;
the broker keeps its hash. Delete the hand-out file once the devices are provisioned
(docs/operations.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from devices.publisher import BrokerAddress
from devices.registry import DeviceRegistry
from ledger.keyfile import load_or_create_signer, write_private
from simulator.fleet import Fleet
from simulator.ward import SIMULATED_WARD, build_ward
from vitaltrail.broker_access import BrokerClient, Kind, Topics, write_access
from vitaltrail.certificates import load_or_create_ca, write_server_cert
from vitaltrail.demo import register_ward
from vitaltrail.settings import Settings
from vitaltrail.witness_server import load_or_create_cosigner

# Which secret directories each kind of service may see (public/ aside, which anyone may).
CONSUMERS: dict[str, frozenset[str]] = {
    "mosquitto": frozenset({"broker"}),
    "ingest": frozenset({"ledger"}),  # and its own <ingestor>/ directory
    "api": frozenset({"api"}),
    "keycloak": frozenset({"keycloak"}),
    "witness": frozenset({"witness"}),
    "simulator": frozenset({"handout", "simulator"}),
}


@dataclass(frozen=True)
class SecretsLayout:
    """Where deploy-init puts each secret (see the module's table)."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def ledger_key(self) -> Path:
        return self.root / "ledger" / "ledger.key"

    @property
    def witness_key(self) -> Path:
        return self.root / "witness" / "witness.key"

    @property
    def api_tls(self) -> Path:
        """The API's HTTPS certificate and key (``server.{crt,key}``)."""
        return self.own("api") / "tls"

    @property
    def keycloak_tls(self) -> Path:
        """The OpenID provider's (Keycloak's) HTTPS certificate and key."""
        return self.own("keycloak") / "tls"

    @property
    def handout(self) -> Path:
        return self.root / "handout" / "device-passwords.json"

    @property
    def simulator(self) -> Path:
        return self.root / "simulator"

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def access_file(self) -> Path:
        return self.broker / "dynamic-security.json"

    def own(self, service: str) -> Path:
        """A service's own directory: an ingestor's broker password, its pgpass."""
        return self.root / service


def adopt_earlier_layout(data_dir: Path, layout: SecretsLayout) -> list[Path]:
    """Before issue #8, deploy-init kept the ledger key, the witness's key and state and the
    simulated devices' keys in the data directory (a volume the log's services mount): move
    them to their own directories, so an existing log keeps its key. Returns what moved."""
    moved = []
    for old, new in (
        (data_dir / "keys", layout.ledger_key.parent),
        (data_dir / "witness", layout.witness_key.parent),
        (data_dir / "simulator", layout.simulator),
    ):
        for path in sorted(old.iterdir()) if old.is_dir() else []:
            target = new / path.name
            if target.exists():
                print(f"warning: kept {target}; {path} was not moved, remove it by hand")
                continue
            new.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved.append(target)
        if old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return moved


def adopt_ca_certificate(layout: SecretsLayout) -> None:
    """Before issue #9 the CA's certificate was kept with the broker's only: put it beside the
    CA's key, where the next certificates it signs are made from."""
    key, cert, kept = layout.ca / "ca.key", layout.ca / "ca.crt", layout.broker / "certs" / "ca.crt"
    if key.exists() and not cert.exists() and kept.exists():
        shutil.copyfile(kept, cert)


def server_names(service: str, public_host: str) -> list[str]:
    """A server certificate's names: the compose service, loopback, and the host name outside
    clients (browsers, apps, devices) reach it by."""
    names = [service, "localhost", "127.0.0.1", public_host]
    return list(dict.fromkeys(names))


def write_certificates(layout: SecretsLayout, broker_host: str, public_host: str) -> None:
    """The CA, and the certificates of the broker, the API and the OpenID provider (each kept
    if already made); the CA's certificate in public/."""
    adopt_ca_certificate(layout)
    ca = load_or_create_ca(layout.ca)
    write_server_cert(layout.broker / "certs", ca, server_names(broker_host, public_host))
    write_server_cert(layout.api_tls, ca, server_names("api", public_host))
    write_server_cert(layout.keycloak_tls, ca, server_names("keycloak", public_host))
    (layout.public / "ca.crt").write_bytes(ca.pem)


def hand_out(path: Path, passwords: dict[str, str]) -> None:
    """Add devices' new clear passwords to the hand-out file (mode 0600)."""
    if not passwords:
        return
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    write_private(path, (json.dumps(known | passwords, indent=2) + "\n").encode())


def pgpass_line(password: str) -> str:
    """A libpq password file's line for any host, port, database and user."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def broker_devices(settings: Settings, ward_fleet: Fleet) -> tuple[list[str], set[str]]:
    """Register the simulated ward (once: a revoked device stays revoked); the broker's devices
    are the registry's that are not revoked. Returns (active, revoked)."""
    registry = DeviceRegistry(settings.registry_path)
    already = {d.device_id for d in registry.all()}
    registry.close()
    if not {d.device_id for d in ward_fleet.ward.devices} <= already:
        register_ward(ward_fleet, settings.registry_path)
    registry = DeviceRegistry(settings.registry_path)
    records = registry.all()
    registry.close()
    revoked = {r.device_id for r in records if r.revoked}
    return sorted({r.device_id for r in records} - revoked), revoked


def issue_identities(
    layout: SecretsLayout, ingestors: list[str], devices: list[str], topics: Topics
) -> dict[str, str]:
    """The broker's file for every ingestor replica and device; a new ingestor password goes to
    its own directory (renewed if that file is gone). Returns the new devices' passwords."""
    clients = [BrokerClient(name, Kind.INGESTOR) for name in ingestors]
    clients += [BrokerClient(device_id, Kind.DEVICE) for device_id in devices]
    password_files = {name: layout.own(name) / "mqtt.password" for name in ingestors}
    renew = frozenset(name for name, path in password_files.items() if not path.exists())
    issued = write_access(layout.access_file, clients, topics, renew)
    for name, path in password_files.items():
        if name in issued:
            write_private(path, (issued.pop(name) + "\n").encode())
    return issued


def deploy_init(
    settings: Settings,
    *,
    secrets_dir: Path,
    broker_host: str,
    witness_url: str,
    public_host: str = "localhost",
    devices: int,
    seed: int,
    ingestors: list[str],
    db_password_file: Path | None = None,
) -> int:
    layout = SecretsLayout(secrets_dir)
    layout.public.mkdir(parents=True, exist_ok=True)
    for path in adopt_earlier_layout(settings.data_dir, layout):
        print(f"moved out of the data directory: {path}")
    signer = load_or_create_signer(layout.ledger_key, settings.origin)
    shutil.copyfile(layout.ledger_key.with_suffix(".pub"), layout.public / "ledger.pub")

    # the ward `vitaltrail simulate` runs by default: the same ids, keys in the same folder
    ward = build_ward(devices, seed, offline_rate=0.1, name=SIMULATED_WARD)
    fleet = Fleet(ward, BrokerAddress(), layout.simulator / SIMULATED_WARD)
    active, revoked = broker_devices(settings, fleet)
    write_certificates(layout, broker_host, public_host)
    topics = Topics(settings.topic_root, settings.share_group)
    issued = issue_identities(layout, ingestors, active, topics)
    hand_out(layout.handout, issued)

    if db_password_file is not None:
        line = pgpass_line(db_password_file.read_text().rstrip("\r\n")).encode()
        for name in [*ingestors, "api"]:
            write_private(layout.own(name) / "pgpass", line)

    cosigner = load_or_create_cosigner(layout.witness_key, settings.witness_name)
    shutil.copyfile(layout.witness_key.with_suffix(".pub"), layout.public / "witness.pub")
    witnesses = [{"url": witness_url, "key": str(cosigner.verifier)}]
    (settings.data_dir / "witnesses.json").write_text(json.dumps(witnesses, indent=2) + "\n")

    print(f"ledger key: {signer.verifier} ({layout.public / 'ledger.pub'})")
    print(f"{len(active)} devices on the broker ({len(revoked)} revoked, refused)")
    print(f"broker: {layout.broker} (CA: {layout.public / 'ca.crt'}); ingestors: {ingestors}")
    print(f"HTTPS certificates for {public_host}: {layout.api_tls}, {layout.keycloak_tls}")
    if issued:
        print(f"{len(issued)} new device passwords in {layout.handout}: provision, then delete it")
    print(f"witness key: {cosigner.verifier} ({layout.public / 'witness.pub'})")
    return 0
