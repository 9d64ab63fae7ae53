"""`vitaltrail demo`: broker, ingestor, ledger, dashboard and a simulated ward in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import sys
from pathlib import Path

from dashboards.app import create_app
from dashboards.bundles import first_reading, proof_bundle_for
from devices.publisher import BrokerAddress, PublisherConfig
from devices.registry import DeviceRegistry
from ledger.ledger import LedgerReader
from simulator.fleet import Fleet
from simulator.scenarios import Applied, Scenario, apply_scenarios
from simulator.ward import Ward, build_ward
from vitaltrail.access_commands import open_directory
from vitaltrail.broker import embedded_broker
from vitaltrail.demo_accounts import (
    DEMO_ACTOR,
    DemoAccounts,
    assign_demo_ward,
    ensure_demo_accounts,
)
from vitaltrail.mosquitto import free_port, port_is_free
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server, stop_on_signals
from vitaltrail.settings import Settings

log = logging.getLogger("vitaltrail.demo")


# The demo's scenarios: (name, patient number, start s, duration s or None for the usual).
# The deterioration is compressed from an hour to five minutes, so NEWS2 reaches 5 (an urgent
# response) within about four minutes of the start and an alert would fire early; the second
# patient deteriorates, not the demo patient (patient-001), whose own page stays calm.
DEMO_SCENARIOS: tuple[tuple[str, int, float, float | None], ...] = (
    ("deterioration", 2, 20.0, 300.0),
    ("desaturation", 3, 480.0, None),
    ("silent-device", 4, 720.0, None),
    ("battery-drain", 5, 120.0, 360.0),  # a technical alert: the wristband below 20 % by 7:00
)


def demo_ward(devices: int, seed: int) -> tuple[Ward, list[Applied]]:
    """The random ward of ``devices`` devices, with the demo's scenarios on the patients it
    has (a ward of one patient still gets the deterioration)."""
    ward = build_ward(devices, seed, offline_rate=0.15)
    count = len(ward.patients)
    scenarios = [
        Scenario(name, str(min(number, count)), start_s, duration_s)
        for name, number, start_s, duration_s in DEMO_SCENARIOS
        if number <= count or name == "deterioration"
    ]
    return ward, apply_scenarios(ward, scenarios)


def demo_fleet(settings: Settings, ward: Ward, broker: BrokerAddress) -> tuple[Fleet, DemoAccounts]:
    """The ward's fleet publishing to ``broker``, its devices registered, and the demo's
    people, the ward's patients in the demo clinician's care team."""
    fleet = Fleet(
        ward, broker, settings.simulator_dir, PublisherConfig(topic_root=settings.topic_root)
    )
    register_ward(fleet, settings.registry_path)
    with open_directory(settings, DEMO_ACTOR) as directory:
        accounts = ensure_demo_accounts(directory, settings.data_dir)
        assign_demo_ward(directory, accounts.clinician, ward.patients)
    return fleet, accounts


def register_ward(fleet: Fleet, registry_path: Path) -> None:
    registry = DeviceRegistry(registry_path)
    try:
        for device in fleet.ward.devices:
            registry.register(
                device.device_id, device.patient_id, fleet.signers[device.device_id].key
            )
    finally:
        registry.close()


def write_sample_bundle(settings: Settings) -> Path | None:
    """Save the proof bundle of the first sealed reading, for the printed verify command."""
    reader = LedgerReader(settings.ledger_location)
    try:
        index = first_reading(reader)
        if index is None:
            return None
        bundle = proof_bundle_for(reader, index)
    except LookupError:
        return None  # nothing recorded and sealed yet
    finally:
        reader.close()
    path = settings.data_dir / "sample-proof.json"
    path.write_text(bundle.to_json())
    return path


def command_name() -> str:
    """How this program was started, so printed commands work as printed (e.g. .venv/bin/vitaltrail)."""
    argv0 = Path(sys.argv[0])
    return str(argv0) if argv0.name == "vitaltrail" else "vitaltrail"


def print_sign_in(settings: Settings, accounts: DemoAccounts, data_dir: Path) -> None:
    """How to sign in as each demo account, where the passwords are, and a token command."""
    print(f"  sign in: http://{settings.http_host}:{settings.http_port}/sign-in as")
    print(f"    {accounts.clinician} (clinician: the demo ward's patients)")
    print(f"    {accounts.patient} (patient {accounts.patient_id})")
    print(f"    {accounts.admin} (admin: devices, users, apps; no vitals)")
    print(f"  passwords: {accounts.passwords_file.resolve()} (readable by you only)")
    print("  a bearer token for scripts and curl:")
    print(
        f"    {command_name()} token --data-dir {shlex.quote(str(data_dir))}"
        f" --http-host {settings.http_host} --http-port {settings.http_port}"
        f" --user {accounts.clinician}"
    )


async def run_demo(settings: Settings, devices: int, duration_s: float | None, seed: int) -> int:
    stop = stop_on_signals()
    broker_port = free_port()
    http_port = settings.http_port
    if http_port == 0 or not port_is_free(settings.http_host, http_port):
        http_port = free_port(settings.http_host)
        print(f"port {settings.http_port} is taken; the dashboard uses {http_port} instead")
    settings = settings.model_copy(
        update={"mqtt_port": broker_port, "mqtt5": False, "http_port": http_port}
    )
    runtime = build_ingest(settings)
    ward, scenarios = demo_ward(devices, seed)
    broker = BrokerAddress(settings.mqtt_host, broker_port, mqtt5=False)
    fleet, accounts = demo_fleet(settings, ward, broker)
    app = create_app(data_sources(settings, runtime.metrics))
    server = http_server(app, settings.http_host, settings.http_port, gc_freeze=True)
    data_dir = settings.data_dir.resolve()
    async with embedded_broker(settings.mqtt_host, broker_port):
        ingest = asyncio.create_task(runtime.ingestor.run(stop))
        web = asyncio.create_task(server.serve())
        await runtime.ingestor.connected.wait()
        simulation = asyncio.create_task(fleet.run(duration_s if duration_s else 10 * 365 * 86400))
        print(
            f"vitaltrail demo: {len(ward.devices)} simulated devices on {len(ward.patients)} patients"
        )
        print(f"  data directory (ledger, store, keys): {data_dir}")
        print(f"  ledger public key: {settings.ledger_key_path.with_suffix('.pub').resolve()}")
        print(f"  dashboard: http://{settings.http_host}:{settings.http_port}/")
        print(f"  API docs:  http://{settings.http_host}:{settings.http_port}/docs")
        print(f"  MQTT broker (embedded, MQTT 3.1.1): {settings.mqtt_host}:{broker_port}")
        print("  on the ward (times from now):")
        for scenario in scenarios:
            print(f"    {scenario.describe()}")
        print_sign_in(settings, accounts, data_dir)
        print("  add a simulated ward of your own (new devices, new patients):")
        print(
            f"    {command_name()} simulate --data-dir {shlex.quote(str(data_dir))}"
            f" --mqtt-host {settings.mqtt_host} --mqtt-port {broker_port} --mqtt311"
            " --register --devices 4 --duration 10"
        )
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await stop.wait()
        bundle = await asyncio.to_thread(write_sample_bundle, settings)  # off the ingest loop
        if bundle is not None:
            print("  verify a reading offline:")
            key = settings.ledger_key_path.with_suffix(".pub")
            print(
                f"    {command_name()} verify {shlex.quote(str(bundle))}"
                f" --ledger-key {shlex.quote(str(key))}"
            )
        print("Ctrl-C stops the demo.")
        sys.stdout.flush()
        await asyncio.wait(
            [simulation, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        stop.set()
        simulation.cancel()
        await asyncio.gather(simulation, return_exceptions=True)
        await ingest
        server.should_exit = True
        await web
    runtime.close()
    print(f"stopped: ledger holds {runtime.ledger.size} entries")
    return 0
