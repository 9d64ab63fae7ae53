"""The subcommands other than demo and bench: ingest, serve, simulate, verify, audit, devices
(users, apps and token are in :mod:`vitaltrail.access_commands`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from access.entry_keys import KEY_RULES
from access.errors import ProviderError
from devices.keys import public_key_from_pem
from devices.publisher import BrokerAddress, PublisherConfig
from devices.registry import DeviceRegistry, RegistryError
from ingest.reindex import reindex
from ledger.audit import audit
from ledger.cosignature import CosignatureVerifier
from ledger.ledger import LedgerReader
from ledger.note import NoteError, NoteVerifier
from ledger.verifier import Policy, verify_bundle
from simulator.fleet import Fleet, FleetStats
from simulator.scenarios import Scenario, apply_scenarios
from simulator.ward import SIMULATED_WARD, build_ward
from vitaltrail.access_commands import print_compliance
from vitaltrail.demo import register_ward
from vitaltrail.progress import live_progress
from vitaltrail.runtime import api_server, build_ingest, open_store
from vitaltrail.services import stop_on_signals
from vitaltrail.settings import Settings


async def run_ingest(settings: Settings, *, serve_api: bool) -> int:
    stop = stop_on_signals()
    runtime = build_ingest(settings)
    print(
        f"ingesting from {settings.mqtt_host}:{settings.mqtt_port} into {settings.data_dir.resolve()}"
    )
    tasks = [asyncio.create_task(runtime.ingestor.run(stop))]
    server = None
    if serve_api:
        server = api_server(settings, runtime, gc_freeze=True)
        tasks.append(asyncio.create_task(server.serve()))
        print(f"dashboard: {settings.base_url}/")
    await tasks[0]
    if server is not None:
        server.should_exit = True
    await asyncio.gather(*tasks[1:])
    runtime.close()
    return 0


async def run_serve(settings: Settings) -> int:
    if settings.ledger_url is None and not settings.ledger_path.exists():
        print(
            f"no ledger in {settings.data_dir.resolve()}: run `vitaltrail ingest` first",
            file=sys.stderr,
        )
        return 2
    try:
        server = api_server(settings, gc_freeze=True)
    except (ProviderError, ValueError) as exc:  # the OpenID provider, the HTTPS files
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    print(f"dashboard: {settings.base_url}/")
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
    return 0


def _status(stats: FleetStats) -> str:
    return (
        f"readings {stats.submitted:,}  acked {stats.sent:,}  queued {stats.queued:,}"
        f"  offline {stats.offline}"
    )


async def run_simulate(
    settings: Settings,
    devices: int,
    duration_s: float,
    seed: int,
    register: bool,
    credentials: dict[str, str] | None = None,
    ward_name: str = SIMULATED_WARD,
    scenarios: Sequence[Scenario] = (),
) -> int:
    ward = build_ward(devices, seed, offline_rate=0.1, name=ward_name)
    try:
        applied = apply_scenarios(ward, scenarios)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for scenario in applied:
        print(f"scenario: {scenario.describe()}")
    tls_ca = str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None
    fleet = Fleet(
        ward,
        BrokerAddress(settings.mqtt_host, settings.mqtt_port, mqtt5=settings.mqtt5, tls_ca=tls_ca),
        settings.simulator_dir / ward_name if ward_name else settings.simulator_dir,
        PublisherConfig(topic_root=settings.topic_root),
        credentials,
    )
    if register:
        register_ward(fleet, settings.registry_path)
    stop = stop_on_signals()
    with live_progress("simulating", duration_s) as shown:
        task = asyncio.create_task(
            fleet.run(duration_s, progress=lambda s: shown.update(s.elapsed_s, _status(s)))
        )
        await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if not task.done():
            task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        s = fleet.stats
        shown.update(min(s.elapsed_s, duration_s), _status(s))
    if isinstance(outcome, Exception):
        print(f"error: the simulation failed: {outcome!r}", file=sys.stderr)
    carried = f" (with {s.carried_over} left from an earlier run)" if s.carried_over else ""
    print(
        f"simulated {len(ward.devices)} devices on {len(ward.patients)} patients for {s.elapsed_s:.0f}s: "
        f"{s.submitted} readings signed, {s.sent} acknowledged by the broker{carried}, "
        f"{s.queued} still queued, {s.reconnects} reconnects"
    )
    return 0 if not isinstance(outcome, BaseException) and s.queued == 0 else 1


def key_text(value: str) -> str:
    """A key given inline (``name+hash+base64``), or the name of a file holding it.

    Raises :class:`FileNotFoundError` for anything else, so a mistyped path is reported as a
    missing file rather than as a key that does not parse.
    """
    path = Path(value)
    if path.is_file():
        return path.read_text()
    if value.count("+") >= 2 and not value.strip().endswith((".pub", ".key", ".txt")):
        return value
    raise FileNotFoundError(f"no such file: {value} (give the key, name+hash+base64, or its file)")


def run_verify(
    bundle_path: Path, ledger_key: str, witness_keys: list[str], quorum: int | None
) -> int:
    try:
        verifier = NoteVerifier.parse(key_text(ledger_key))
    except (NoteError, OSError) as exc:
        print(f"error: the ledger key is not usable: {exc}", file=sys.stderr)
        return 2
    try:
        witnesses = tuple(CosignatureVerifier.parse(key_text(k)) for k in witness_keys)
        policy = Policy(verifier, witnesses, len(witnesses) if quorum is None else quorum)
    except (NoteError, OSError, ValueError) as exc:
        print(f"error: the witness policy is not usable: {exc}", file=sys.stderr)
        return 2
    try:
        document = bundle_path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {bundle_path}: {exc}", file=sys.stderr)
        return 2
    report = verify_bundle(document, policy)
    for check in report.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    if report.ok and report.reading is not None:
        print(
            f"VERIFIED: reading {report.reading.device_id}#{report.reading.seq} is entry {report.index} of {verifier.name}"
        )
        return 0
    print("NOT VERIFIED: " + ", ".join(c.name for c in report.failed()) + " failed")
    return 1


def run_audit(settings: Settings, ledger_key: str | None, witness_keys: list[str]) -> int:
    """Rebuild the log from its entries and check every signature, tile, chain link, key-index
    row and stored cosignature (against ``witness_keys``); then check every recorded access
    against the consents, roles and care teams in force at its position in the log."""
    key_source = ledger_key or str(settings.ledger_key_path.with_suffix(".pub"))
    try:
        verifier = NoteVerifier.parse(key_text(key_source))
    except (NoteError, OSError) as exc:
        print(f"error: the ledger key is not usable: {exc}", file=sys.stderr)
        return 2
    try:
        witnesses = [CosignatureVerifier.parse(key_text(k)) for k in witness_keys]
    except (NoteError, OSError) as exc:
        print(f"error: a witness key is not usable: {exc}", file=sys.stderr)
        return 2
    if settings.ledger_url is None and not settings.ledger_path.exists():
        print(f"error: no ledger in {settings.data_dir.resolve()}", file=sys.stderr)
        return 2
    if ledger_key is None:
        print(f"pinned ledger key: {key_source} (pass --ledger-key to pin your own copy)")
    reader = LedgerReader(settings.ledger_location)
    try:
        if not _audit_ledger(reader, verifier, witnesses):
            print("access: not checked (the ledger itself does not check out)")
            return 1
        access = print_compliance(reader.log.entries(0, reader.log.stored_size()))
    finally:
        reader.close()
    return 0 if access.ok else 1


def _audit_ledger(
    reader: LedgerReader, verifier: NoteVerifier, witnesses: list[CosignatureVerifier]
) -> bool:
    report = audit(reader, verifier, witnesses, KEY_RULES)
    print(
        f"audited {report.entries:,} entries, {report.blocks:,} blocks and {report.tiles:,} tiles"
        f" of {verifier.name}"
    )
    for witness in witnesses:
        print(
            f"witness {witness.name}: {report.cosigned[witness.name]:,} of {report.blocks:,}"
            " blocks carry its cosignature, each verified"
        )
    for name, count in sorted(report.unchecked.items()):
        print(f"not checked: {count:,} cosignatures of {name} (pass its --witness-key to check)")
    for kind, count in sorted(report.unkeyed.items()):
        print(f"not checked: {count:,} entries of kind {kind} (no key rule for it)")
    if report.ok:
        print(
            "OK: every entry, tile, ledger key, key-index row, block signature, chain link"
            " and stored cosignature checks out"
        )
        return True
    first, *rest = report.findings
    print(f"FIRST INCONSISTENCY: {first.where} ({first.check}): {first.detail}")
    for finding in rest:
        print(f"  also: {finding.where} ({finding.check}): {finding.detail}")
    return False


def run_reindex(settings: Settings) -> int:
    """Rebuild the time-series store from the ledger."""
    reader = LedgerReader(settings.ledger_location)
    store = open_store(settings)
    where = settings.influx_url or settings.store_path
    try:
        with live_progress("reindexing", None) as shown:
            stats = reindex(
                reader, store, progress=lambda s: shown.update(0, f"{s.entries:,} entries read")
            )
    finally:
        store.close()
        reader.close()
    print(
        f"reindexed {stats.readings:,} readings ({stats.points:,} samples) from"
        f" {stats.entries:,} ledger entries into {where}"
    )
    return 0


def run_devices(settings: Settings, args: argparse.Namespace) -> int:
    registry = DeviceRegistry(settings.registry_path)
    try:
        if args.action == "register":
            record = registry.register(
                args.device_id, args.patient, public_key_from_pem(args.public_key.read_bytes())
            )
            print(
                f"registered {record.device_id} for {record.patient_id}, kid {record.key.kid.hex()}"
            )
        elif args.action == "revoke":
            record = registry.revoke(args.device_id)
            print(f"revoked {record.device_id}")
        else:
            for record in registry.all():
                state = "revoked" if record.revoked else "active"
                print(
                    f"{record.device_id}\t{record.patient_id}\t{state}\t{record.key.kid.hex()[:16]}"
                )
    except (RegistryError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        registry.close()
    return 0
