"""The `vitaltrail` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import logging
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from simulator.scenarios import DEFAULT_START_S, SCENARIOS, Scenario
from simulator.ward import SIMULATED_WARD
from vitaltrail.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "mqtt_host": getattr(args, "mqtt_host", None),
            "mqtt_port": getattr(args, "mqtt_port", None),
            "http_host": getattr(args, "http_host", None),
            "http_port": getattr(args, "http_port", None),
            "witness_name": getattr(args, "name", None),
            "witness_host": getattr(args, "host", None),
            "witness_port": getattr(args, "port", None),
        }.items()
        if value is not None
    }
    if getattr(args, "mqtt311", False):
        overrides["mqtt5"] = False
    return Settings(**overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from vitaltrail.demo import run_demo

    return asyncio.run(run_demo(_settings(args), args.devices, args.duration, args.seed))


def cmd_ingest(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_ingest

    return asyncio.run(run_ingest(_settings(args), serve_api=args.serve_api))


def cmd_serve(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_serve

    return asyncio.run(run_serve(_settings(args)))


def cmd_simulate(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_simulate

    credentials = json.loads(args.credentials.read_text()) if args.credentials else None
    return asyncio.run(
        run_simulate(
            _settings(args),
            args.devices,
            args.duration,
            args.seed,
            args.register,
            credentials,
            args.ward,
            args.scenario,
        )
    )


def _scenario(text: str) -> Scenario:
    try:
        return Scenario.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scenarios_epilog() -> str:
    lines = ["scenarios (--scenario NAME[:PATIENT[:START_S]]):"]
    for name, kind in SCENARIOS.items():
        lines.append(
            textwrap.fill(
                f"{name}: {kind.summary}", 79, initial_indent="  ", subsequent_indent="    "
            )
        )
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_verify

    return run_verify(args.bundle, args.ledger_key, args.witness_key, args.quorum)


def cmd_deploy_init(args: argparse.Namespace) -> int:
    from vitaltrail.deploy import deploy_init

    return deploy_init(
        _settings(args),
        secrets_dir=args.secrets_dir,
        broker_host=args.broker_host,
        witness_url=args.witness_url,
        public_host=args.public_host,
        devices=args.devices,
        seed=args.seed,
        ingestors=args.ingestor or ["ingest-a", "ingest-b"],
        db_password_file=args.db_password_file,
    )


def cmd_reindex(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_reindex

    return run_reindex(_settings(args))


def cmd_audit(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_audit

    return run_audit(_settings(args), args.ledger_key, args.witness_key)


def cmd_witness(args: argparse.Namespace) -> int:
    from ledger.note import NoteError, NoteVerifier
    from vitaltrail.commands import key_text
    from vitaltrail.witness_server import run_witness

    try:
        logs = [NoteVerifier.parse(key_text(k)) for k in args.log_key]
    except (NoteError, OSError) as exc:
        print(f"error: a log key is not usable: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_witness(_settings(args), logs))


def cmd_devices(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_devices

    return run_devices(_settings(args), args)


def cmd_users(args: argparse.Namespace) -> int:
    from vitaltrail.access_commands import run_users

    return run_users(_settings(args), args)


def cmd_teams(args: argparse.Namespace) -> int:
    from vitaltrail.access_commands import run_teams

    return run_teams(_settings(args), args)


def cmd_apps(args: argparse.Namespace) -> int:
    from vitaltrail.access_commands import run_apps

    return run_apps(_settings(args), args)


def cmd_token(args: argparse.Namespace) -> int:
    from vitaltrail.access_commands import run_token

    return run_token(_settings(args), args)


# Each bench's module and entry point, imported only when that bench runs.
BENCHES = {
    "ingest": "vitaltrail.bench.ingest:run_bench_ingest",
    "store": "vitaltrail.bench.store:run_bench_store",
    "ledger": "vitaltrail.bench.ledger:run_bench_ledger",
    "fuzz": "vitaltrail.bench.fuzz:run_bench_fuzz",
    "api-load": "vitaltrail.bench.api_load:run_bench_api_load",
    "access-trail": "vitaltrail.bench.access_trail:run_bench_access_trail",
    "hostile": "vitaltrail.bench.hostile:run_bench_hostile",
    "fhir": "vitaltrail.bench.fhir:run_bench_fhir",
    "ward": "vitaltrail.bench.ward:run_bench_ward",
}


def cmd_bench(args: argparse.Namespace) -> int:
    module, entry = BENCHES[args.bench].split(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), entry)
    return run(args)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default, unless it has none to show (on/off, required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or action.default in (None, argparse.SUPPRESS, False)
            or action.required
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


def _setting(field: str) -> str:
    """Where a flag's value comes from when it is not given: the settings default, or its env var."""
    default = Settings.model_fields[field].default
    return f"default: {default}, or ${'VITALTRAIL_' + field.upper()}"


def _global_flags(suppress: bool) -> argparse.ArgumentParser:
    """Flags every subcommand takes, before or after its name (``vitaltrail demo --data-dir d``)."""
    g = argparse.ArgumentParser(add_help=False)
    g.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS if suppress else None,
        help=f"ledger, store, registry and keys ({_setting('data_dir')})",
    )
    g.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=argparse.SUPPRESS if suppress else "INFO",
        help="what to log on stderr (default: INFO; patient data only at DEBUG)",
    )
    return g


def output_flag(bench: argparse.ArgumentParser) -> None:
    """Every bench can keep its figures (docs/bench/*.json)."""
    bench.add_argument(
        "--output", type=Path, help="also write the results as JSON here (default: printed only)"
    )


def parser() -> argparse.ArgumentParser:
    common = _global_flags(suppress=True)
    p = argparse.ArgumentParser(
        prog="vitaltrail",
        description=__doc__,
        parents=[_global_flags(suppress=False)],
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
    ) -> argparse.ArgumentParser:
        return parent.add_parser(
            name, help=text, description=text, parents=[common], formatter_class=_HelpFormatter
        )

    def mqtt_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--mqtt-host", help=f"the MQTT broker's host ({_setting('mqtt_host')})")
        sp.add_argument(
            "--mqtt-port", type=int, help=f"the MQTT broker's port ({_setting('mqtt_port')})"
        )
        sp.add_argument(
            "--mqtt311",
            action="store_true",
            help="speak MQTT 3.1.1, e.g. to the demo's embedded broker (default: MQTT 5)",
        )

    def http_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--http-host", help=f"where the web app listens ({_setting('http_host')})")
        sp.add_argument(
            "--http-port", type=int, help=f"the web app's port ({_setting('http_port')})"
        )

    demo = command(sub, "demo", "everything in one process on embedded defaults")
    demo.add_argument("--devices", type=int, default=12, help="simulated devices in the ward")
    demo.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--seed", type=int, default=1, help="the simulated ward's random seed")
    http_flags(demo)
    demo.set_defaults(func=cmd_demo)

    ingest = command(sub, "ingest", "consume readings from an MQTT broker into the ledger")
    mqtt_flags(ingest)
    http_flags(ingest)
    ingest.add_argument("--serve-api", action="store_true", help="also serve the web app")
    ingest.set_defaults(func=cmd_ingest)

    serve = command(sub, "serve", "serve the dashboard and API over existing data")
    http_flags(serve)
    serve.set_defaults(func=cmd_serve)

    sim = command(sub, "simulate", "publish a simulated ward's readings")
    sim.epilog = _scenarios_epilog()
    mqtt_flags(sim)
    sim.add_argument("--devices", type=int, default=10, help="simulated devices")
    sim.add_argument("--duration", type=float, default=60, help="seconds to publish")
    sim.add_argument("--seed", type=int, default=1, help="the simulated ward's random seed")
    sim.add_argument(
        "--ward",
        default=SIMULATED_WARD,
        help="prefix of the simulated patients' and devices' ids (and their keys' folder), so a "
        "simulation never takes the demo's devices",
    )
    sim.add_argument(
        "--register", action="store_true", help="register the devices in the data dir's registry"
    )
    sim.add_argument(
        "--credentials",
        type=Path,
        help="JSON of each device's broker password, deploy-init's (default: none, anonymous)",
    )
    sim.add_argument(
        "--scenario",
        action="append",
        type=_scenario,
        default=[],
        metavar="NAME[:PATIENT[:START_S]]",
        help=f"put a scripted scenario on the ward (listed below); repeat for each. PATIENT: "
        f"an id or a number, 2 for the second patient (default: the next patient without one); "
        f"START_S: seconds after the start (default: {DEFAULT_START_S:.0f}) "
        "(default: none, the random ward alone)",
    )
    sim.set_defaults(func=cmd_simulate)

    verify = command(sub, "verify", "check a proof bundle offline against a pinned ledger key")
    verify.add_argument("bundle", type=Path, help="the proof bundle (JSON) to check")
    verify.add_argument("--ledger-key", required=True, help="verifier key, or a file holding it")
    verify.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a pinned witness key (or a file holding it); repeat for each witness (default: none)",
    )
    verify.add_argument(
        "--quorum", type=int, help="cosignatures required (default: all --witness-key given)"
    )
    verify.set_defaults(func=cmd_verify)

    init = command(
        sub, "deploy-init", "first-run keys, certificates and passwords of a compose deployment"
    )
    init.add_argument(
        "--secrets-dir",
        type=Path,
        required=True,
        help="where each service's secrets go, a directory per service (see docs/operations.md)",
    )
    init.add_argument(
        "--broker-host",
        default="mosquitto",
        help="the broker's name in its cert (default: %(default)s)",
    )
    init.add_argument(
        "--public-host",
        default="localhost",
        help="the host name browsers, apps and devices reach the deployment by: in the API's, "
        "the OpenID provider's and the broker's certificates (default: %(default)s)",
    )
    init.add_argument(
        "--witness-url",
        default="http://witness:7380",
        help="where the ingestors reach the witness (default: %(default)s)",
    )
    init.add_argument(
        "--devices", type=int, default=12, help="the simulated ward's size (default: %(default)s)"
    )
    init.add_argument(
        "--seed", type=int, default=1, help="the simulated ward's seed (default: %(default)s)"
    )
    init.add_argument(
        "--ingestor",
        action="append",
        help="an ingestor replica's broker user and client id; repeat for each "
        "(default: ingest-a and ingest-b)",
    )
    init.add_argument(
        "--db-password-file",
        type=Path,
        help="the PostgreSQL password, written as a pgpass file for each ingestor and the api "
        "(default: none written)",
    )
    init.set_defaults(func=cmd_deploy_init)

    reindex = command(sub, "reindex", "rebuild the time-series store from the ledger (the record)")
    reindex.set_defaults(func=cmd_reindex)

    audit = command(
        sub, "audit", "rebuild the ledger from its entries and check every signature and link"
    )
    audit.add_argument(
        "--ledger-key", help="the ledger's verifier key, or a file (default: the data dir's)"
    )
    audit.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a witness key (or a file holding it) whose stored cosignatures must all verify;"
        " repeat for each witness (default: none; other witnesses' cosignatures are counted,"
        " not checked)",
    )
    audit.set_defaults(func=cmd_audit)

    witness = command(sub, "witness", "cosign checkpoints of logs (C2SP tlog-witness)")
    witness.add_argument(
        "--log-key",
        action="append",
        required=True,
        help="verifier key (or a file holding it) of a log to witness; repeat for each log",
    )
    witness.add_argument("--name", help=f"this witness's key name ({_setting('witness_name')})")
    witness.add_argument("--host", help=f"where it listens ({_setting('witness_host')})")
    witness.add_argument("--port", type=int, help=f"its port ({_setting('witness_port')})")
    witness.set_defaults(func=cmd_witness)

    devices = command(sub, "devices", "the device registry")
    dsub = devices.add_subparsers(dest="action", required=True, metavar="ACTION")
    reg = command(dsub, "register", "register a device's public key for a patient")
    reg.add_argument("device_id", help="1-64 characters of [A-Za-z0-9._-]")
    reg.add_argument("--patient", required=True, help="the patient the device is bound to")
    reg.add_argument(
        "--public-key", type=Path, required=True, help="the device's PEM SubjectPublicKeyInfo"
    )
    rev = command(dsub, "revoke", "revoke a device: its later readings are refused")
    rev.add_argument("device_id", help="the device to revoke")
    command(dsub, "list", "every registered device and its state")
    devices.set_defaults(func=cmd_devices)

    users = command(sub, "users", "the people who sign in: clinicians, patients, admins")
    usub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    uadd = command(usub, "add", "add an account (the password is asked for, or read from a file)")
    uadd.add_argument(  # not "name": that is the witness's name in the settings
        "user", metavar="NAME", help="the user name: 1-64 of [a-z0-9._@-], starting [a-z0-9]"
    )
    uadd.add_argument(
        "--role", required=True, choices=["clinician", "patient", "admin"], help="what they do"
    )
    uadd.add_argument(
        "--patient",
        help="the patient a patient account is (default: none; required for --role patient)",
    )
    secret = uadd.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file, first line (default: none, asked for twice)",
    )
    secret.add_argument(
        "--external",
        action="store_true",
        help="a user of the hospital's OpenID provider, NAME its `sub`: no password here, "
        "registered for the role and care teams the audit judges by (default: off)",
    )
    command(usub, "list", "every account, its role and state")
    udis = command(
        usub, "disable", "disable an account: its tokens are refused and its sessions ended now"
    )
    udis.add_argument("user", metavar="NAME", help="the user name")
    uen = command(usub, "enable", "enable a disabled account again")
    uen.add_argument("user", metavar="NAME", help="the user name")
    users.set_defaults(func=cmd_users)

    teams = command(sub, "teams", "care teams: which clinicians read which patients")
    tsub = teams.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(tsub, "list", "every care team, its members and patients")
    tcreate = command(tsub, "create", "create a care team (a ward)")
    tcreate.add_argument("team", help="its name: 1-64 of [A-Za-z0-9 ._-], starting [A-Za-z0-9]")
    for action, what, metavar, who in (
        ("add-member", "add a clinician to", "NAME", "the clinician's user name"),
        ("remove-member", "remove a clinician from", "NAME", "the clinician's user name"),
        ("add-patient", "add a patient to", "PATIENT", "the patient id"),
        ("remove-patient", "remove a patient from", "PATIENT", "the patient id"),
    ):
        change = command(tsub, action, f"{what} a care team")
        change.add_argument("team", help="the care team")
        change.add_argument("who", metavar=metavar, help=who)
    teams.set_defaults(func=cmd_teams)

    apps = command(sub, "apps", "telemedicine apps (SMART Backend Services clients)")
    asub = apps.add_subparsers(dest="action", required=True, metavar="ACTION")
    areg = command(asub, "register", "register an app by its public JWK set and allowed scopes")
    areg.add_argument("client_id", help="its OAuth client id: 1-128 of [A-Za-z0-9._:-]")
    areg.add_argument("--jwks", type=Path, required=True, help="a file holding its public JWK set")
    areg.add_argument(
        "--scope",
        action="append",
        required=True,
        help="a system/ scope it may be granted, e.g. system/Observation.rs; repeat for each",
    )
    areg.add_argument("--name", dest="app_name", help="its display name (default: the client id)")
    command(asub, "list", "every app, its scopes and state")
    adis = command(asub, "disable", "disable an app: it gets no more tokens")
    adis.add_argument("client_id", help="the app's client id")
    apps.set_defaults(func=cmd_apps)

    token = command(
        sub, "token", "print a bearer token for a user, for scripts and curl (never logged)"
    )
    token.add_argument("--user", required=True, help="the user name it is issued to")
    http_flags(token)  # the API's address names the issuer and audience (or $VITALTRAIL_PUBLIC_URL)
    token.add_argument(
        "--scope",
        action="append",
        help="narrow the token to this scope; repeat for each (default: all of the role's)",
    )
    token.set_defaults(func=cmd_token)

    bench = command(sub, "bench", "measure throughput and latency on this machine")
    bsub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bi = command(bsub, "ingest", "end-to-end ingest through a real Mosquitto")
    bi.add_argument("--messages", type=int, default=100_000, help="backlog-drain size")
    bi.add_argument("--rate", type=int, default=5000, help="live publishing rate, msg/s")
    bi.add_argument("--live-seconds", type=float, default=20, help="length of the live run")
    bi.add_argument("--devices", type=int, default=100, help="simulated devices publishing")
    bi.add_argument(
        "--store", choices=["sqlite", "influxdb"], default="sqlite", help="the time-series store"
    )
    output_flag(bi)
    bs = command(bsub, "store", "the dashboard's 24 h range query on SQLite and InfluxDB")
    bs.add_argument("--patients", type=int, default=10, help="patients with a day of 1 Hz data")
    bs.add_argument("--queries", type=int, default=50, help="range queries timed per store")
    output_flag(bs)
    bl = command(bsub, "ledger", "Merkle log appends and proofs beside pymerkle 7")
    bl.add_argument("--entries", type=int, default=10_000_000, help="entries appended")
    bl.add_argument("--batch", type=int, default=10_000, help="entries per append")
    bl.add_argument("--entry-bytes", type=int, default=200, help="about a signed reading")
    bl.add_argument("--proofs", type=int, default=2000, help="random proofs timed per kind")
    bl.add_argument("--devices", type=int, default=100, help="key spread of the entries")
    bl.add_argument(
        "--pymerkle-seconds", type=float, default=120, help="pymerkle's proof budget, seconds"
    )
    bl.add_argument("--dir", type=Path, help="where the two databases go (default: a temp dir)")
    output_flag(bl)
    bf = command(bsub, "fuzz", "hostile inputs through every decoder: 0 may escape")
    bf.add_argument("--inputs", type=int, default=1_000_000, help="inputs in all")
    bf.add_argument(
        "--seed", type=int, help="makes a run repeatable (default: a random seed, printed)"
    )
    output_flag(bf)
    bt = command(
        bsub, "access-trail", "ward endpoint p99 and requests/s with the access trail on and off"
    )
    bt.add_argument(
        "--patients", type=int, default=50, help="patients in the ward (default: %(default)s)"
    )
    bt.add_argument(
        "--rate", type=float, default=20, help="open-loop requests/s (default: %(default)s)"
    )
    bt.add_argument(
        "--seconds", type=float, default=30, help="per loop and mode (default: %(default)s)"
    )
    bt.add_argument(
        "--clients", type=int, default=4, help="closed-loop clients (default: %(default)s)"
    )
    bt.add_argument(
        "--hours",
        type=float,
        default=0.1,
        help="history per patient at 1 Hz (default: %(default)s)",
    )
    output_flag(bt)
    ba = command(
        bsub, "api-load", "live ingest p50/p99 with and without API clients on its event loop"
    )
    ba.add_argument(
        "--rate", type=int, default=1000, help="publishing rate, msg/s (default: %(default)s)"
    )
    ba.add_argument("--seconds", type=float, default=20, help="per phase (default: %(default)s)")
    ba.add_argument(
        "--clients",
        type=int,
        default=8,
        help="API clients in the loaded phase (default: %(default)s)",
    )
    ba.add_argument(
        "--patients",
        type=int,
        default=8,
        help="patients in the store's history (default: %(default)s)",
    )
    ba.add_argument(
        "--hours", type=float, default=24, help="history per patient at 1 Hz (default: %(default)s)"
    )
    ba.add_argument(
        "--bucket-s", type=int, default=60, help="series query bucket, s (default: %(default)s)"
    )
    ba.add_argument(
        "--devices", type=int, default=100, help="publishing devices (default: %(default)s)"
    )
    output_flag(ba)
    bh = command(bsub, "hostile", "the ingestor's peak RSS over a backlog of refused messages")
    bh.add_argument(
        "--messages", type=int, default=1_000_000, help="backlog size (default: %(default)s)"
    )
    bh.add_argument(
        "--max-size-share",
        type=float,
        default=0.25,
        help="share of messages at the broker's packet limit; the rest are small junk and"
        " unsigned or forged readings (default: %(default)s)",
    )
    output_flag(bh)
    bfh = command(
        bsub, "fhir", "FHIR search of a day of 1 Hz heart rate: pages/s and p99, trail on and off"
    )
    bfh.add_argument(
        "--patients", type=int, default=1, help="patients, each a day of heart rate at 1 Hz"
    )
    bfh.add_argument("--hours", type=float, default=24, help="history per patient at 1 Hz")
    bfh.add_argument("--seconds", type=float, default=20, help="per phase and mode")
    bfh.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[1, 4],
        help="closed-loop clients: each phase runs at each of these concurrencies",
    )
    bfh.add_argument(
        "--ceiling-pages", type=int, default=300, help="pages made in-process per ceiling step"
    )
    bfh.add_argument(
        "--compare-gc",
        action="store_true",
        help="also run the trail-on server without its start-up gc.freeze()",
    )
    output_flag(bfh)
    bwd = command(
        bsub, "ward", "the ward summary and the alert engine at a ward's size: p99 and ceilings"
    )
    bwd.add_argument("--patients", type=int, default=200, help="patients on the ward")
    bwd.add_argument("--readings", type=int, default=20, help="signed readings per patient")
    bwd.add_argument("--seconds", type=float, default=20, help="closed-loop load per concurrency")
    bwd.add_argument(
        "--clients", type=int, nargs="+", default=[1, 4], help="closed-loop clients, each run"
    )
    bwd.add_argument(
        "--ceiling-calls", type=int, default=300, help="summaries and rounds timed in-process"
    )
    bwd.add_argument(
        "--alert-probes",
        type=int,
        default=20,
        help="threshold-crossing readings timed to the page's alert stream (0: none)",
    )
    bwd.add_argument(
        "--alert-rate", type=float, default=5000, help="other readings/s beside the probes"
    )
    output_flag(bwd)
    bench.set_defaults(func=cmd_bench)
    return p


def _version() -> str:
    try:
        return importlib.metadata.version("vitaltrail")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # HTTP clients log each request's URL at INFO, and a store query names a patient: keep
    # them to warnings (no patient data in logs above DEBUG).
    for noisy in ("httpx2", "httpcore", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
