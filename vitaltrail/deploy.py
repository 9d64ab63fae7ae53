"""`vitaltrail deploy-init`: the first-run secrets of a docker-compose deployment.

Run once by the compose file's ``setup`` service, into the deployment's volumes - never into
the repository. Each step keeps what an earlier run made, so running it again is harmless:

* the ledger's signing key (``<data dir>/keys/ledger.key``, its ``.pub`` to pin);
* the simulated ward's device keys, registered with their patients;
* the broker's TLS material and a password per client (``ingest`` and every device);
* the witness's key, and ``<data dir>/witnesses.json`` telling the ingestors where it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from devices.publisher import BrokerAddress
from devices.registry import DeviceRegistry
from ledger.keyfile import load_or_create_signer, write_private
from simulator.fleet import Fleet
from simulator.ward import SIMULATED_WARD, build_ward
from vitaltrail.broker_auth import write_passwords, write_tls
from vitaltrail.demo import register_ward
from vitaltrail.settings import Settings
from vitaltrail.witness_server import load_or_create_cosigner


def deploy_init(
    settings: Settings,
    *,
    broker_dir: Path,
    broker_host: str,
    witness_url: str,
    devices: int,
    seed: int,
) -> int:
    signer = load_or_create_signer(settings.ledger_key_path, settings.origin)
    # the ward `vitaltrail simulate` runs by default: the same ids, keys in the same folder
    ward = build_ward(devices, seed, offline_rate=0.1, name=SIMULATED_WARD)
    fleet = Fleet(ward, BrokerAddress(), settings.simulator_dir / SIMULATED_WARD)
    registered = {d.device_id for d in ward.devices}
    registry = DeviceRegistry(settings.registry_path)
    already = {d.device_id for d in registry.all()}
    registry.close()
    if not registered <= already:  # a revoked device must stay revoked on a second run
        register_ward(fleet, settings.registry_path)
    write_tls(broker_dir / "certs", [broker_host, "localhost", "127.0.0.1"])
    passwords = write_passwords(broker_dir, ["ingest", *sorted(registered)])
    write_private(broker_dir / "ingest.password", (passwords["ingest"] + "\n").encode())
    cosigner = load_or_create_cosigner(settings.witness_dir / "witness.key", settings.witness_name)
    witnesses = [{"url": witness_url, "key": str(cosigner.verifier)}]
    (settings.data_dir / "witnesses.json").write_text(json.dumps(witnesses, indent=2) + "\n")
    print(f"ledger key: {signer.verifier} ({settings.ledger_key_path.with_suffix('.pub')})")
    print(f"{len(registered)} simulated devices registered in {settings.registry_path}")
    print(f"broker TLS and passwords: {broker_dir} (CA: {broker_dir / 'certs' / 'ca.crt'})")
    print(f"witness key: {cosigner.verifier} ({settings.witness_dir / 'witness.pub'})")
    return 0
