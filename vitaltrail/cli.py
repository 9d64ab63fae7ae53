"""The `vitaltrail` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

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
            _settings(args), args.devices, args.duration, args.seed, args.register, credentials
        )
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_verify

    return run_verify(args.bundle, args.ledger_key, args.witness_key, args.quorum)


def cmd_deploy_init(args: argparse.Namespace) -> int:
    from vitaltrail.deploy import deploy_init

    return deploy_init(
        _settings(args),
        broker_dir=args.broker_dir,
        broker_host=args.broker_host,
        witness_url=args.witness_url,
        devices=args.devices,
        seed=args.seed,
    )


def cmd_reindex(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_reindex

    return run_reindex(_settings(args))


def cmd_audit(args: argparse.Namespace) -> int:
    from vitaltrail.commands import run_audit

    return run_audit(_settings(args), args.ledger_key)


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


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench == "store":
        from vitaltrail.bench.store import run_bench_store

        return run_bench_store(args)
    if args.bench == "ledger":
        from vitaltrail.bench.ledger import run_bench_ledger

        return run_bench_ledger(args)
    if args.bench == "api-load":
        from vitaltrail.bench.api_load import run_bench_api_load

        return run_bench_api_load(args)
    if args.bench == "hostile":
        from vitaltrail.bench.hostile import run_bench_hostile

        return run_bench_hostile(args)
    from vitaltrail.bench.ingest import run_bench_ingest

    return run_bench_ingest(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vitaltrail", description=__doc__)
    p.add_argument(
        "--data-dir", type=Path, help="ledger, store, registry and keys (default ./data)"
    )
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)

    def mqtt_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--mqtt-host")
        sp.add_argument("--mqtt-port", type=int)
        sp.add_argument(
            "--mqtt311", action="store_true", help="MQTT 3.1.1 (no shared subscription)"
        )

    def http_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--http-host")
        sp.add_argument("--http-port", type=int)

    demo = sub.add_parser("demo", help="everything in one process on embedded defaults")
    demo.add_argument("--devices", type=int, default=12)
    demo.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    demo.add_argument("--seed", type=int, default=1)
    http_flags(demo)
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser("ingest", help="consume readings from an MQTT broker into the ledger")
    mqtt_flags(ingest)
    http_flags(ingest)
    ingest.add_argument("--serve-api", action="store_true", help="also serve the web app")
    ingest.set_defaults(func=cmd_ingest)

    serve = sub.add_parser("serve", help="serve the dashboard and API over existing data")
    http_flags(serve)
    serve.set_defaults(func=cmd_serve)

    sim = sub.add_parser("simulate", help="publish a simulated ward's readings")
    mqtt_flags(sim)
    sim.add_argument("--devices", type=int, default=10)
    sim.add_argument("--duration", type=float, default=60, help="seconds")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument(
        "--register", action="store_true", help="register the devices in the data dir's registry"
    )
    sim.add_argument(
        "--credentials", type=Path, help="JSON of each device's broker password (deploy-init's)"
    )
    sim.set_defaults(func=cmd_simulate)

    verify = sub.add_parser(
        "verify", help="check a proof bundle offline against a pinned ledger key"
    )
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--ledger-key", required=True, help="verifier key, or a file holding it")
    verify.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a pinned witness key (or a file holding it); repeat for each witness",
    )
    verify.add_argument(
        "--quorum", type=int, help="cosignatures required (default: all --witness-key given)"
    )
    verify.set_defaults(func=cmd_verify)

    init = sub.add_parser(
        "deploy-init", help="first-run keys, certificates and passwords of a compose deployment"
    )
    init.add_argument("--broker-dir", type=Path, required=True)
    init.add_argument("--broker-host", default="mosquitto", help="the broker's name in its cert")
    init.add_argument("--witness-url", default="http://witness:7380")
    init.add_argument("--devices", type=int, default=12, help="the simulated ward's size")
    init.add_argument("--seed", type=int, default=1)
    init.set_defaults(func=cmd_deploy_init)

    reindex = sub.add_parser(
        "reindex", help="rebuild the time-series store from the ledger (the record)"
    )
    reindex.set_defaults(func=cmd_reindex)

    audit = sub.add_parser(
        "audit", help="rebuild the ledger from its entries and check every signature and link"
    )
    audit.add_argument(
        "--ledger-key", help="the ledger's verifier key, or a file (default: the data dir's)"
    )
    audit.set_defaults(func=cmd_audit)

    witness = sub.add_parser("witness", help="cosign checkpoints of logs (C2SP tlog-witness)")
    witness.add_argument(
        "--log-key",
        action="append",
        required=True,
        help="verifier key (or a file holding it) of a log to witness; repeat for each log",
    )
    witness.add_argument("--name", help="this witness's key name (default: from settings)")
    witness.add_argument("--host")
    witness.add_argument("--port", type=int)
    witness.set_defaults(func=cmd_witness)

    devices = sub.add_parser("devices", help="the device registry")
    dsub = devices.add_subparsers(dest="action", required=True)
    reg = dsub.add_parser("register")
    reg.add_argument("device_id")
    reg.add_argument("--patient", required=True)
    reg.add_argument("--public-key", type=Path, required=True, help="PEM SubjectPublicKeyInfo")
    rev = dsub.add_parser("revoke")
    rev.add_argument("device_id")
    dsub.add_parser("list")
    devices.set_defaults(func=cmd_devices)

    bench = sub.add_parser("bench", help="measure throughput and latency on this machine")
    bsub = bench.add_subparsers(dest="bench", required=True)
    bi = bsub.add_parser("ingest", help="end-to-end ingest through a real Mosquitto")
    bi.add_argument("--messages", type=int, default=100_000, help="backlog-drain size")
    bi.add_argument("--rate", type=int, default=5000, help="live publishing rate, msg/s")
    bi.add_argument("--live-seconds", type=float, default=20)
    bi.add_argument("--devices", type=int, default=100)
    bi.add_argument(
        "--store", choices=["sqlite", "influxdb"], default="sqlite", help="the time-series store"
    )
    bi.add_argument("--output", type=Path, help="also write the results as JSON here")
    bs = bsub.add_parser("store", help="the dashboard's 24 h range query on SQLite and InfluxDB")
    bs.add_argument("--patients", type=int, default=10)
    bs.add_argument("--queries", type=int, default=50)
    bs.add_argument("--output", type=Path, help="also write the results as JSON here")
    bl = bsub.add_parser("ledger", help="Merkle log appends and proofs beside pymerkle 7")
    bl.add_argument("--entries", type=int, default=10_000_000)
    bl.add_argument("--batch", type=int, default=10_000, help="entries per append")
    bl.add_argument("--entry-bytes", type=int, default=200, help="about a signed reading")
    bl.add_argument("--proofs", type=int, default=2000, help="random proofs timed per kind")
    bl.add_argument("--devices", type=int, default=100, help="key spread of the entries")
    bl.add_argument("--pymerkle-seconds", type=float, default=120, help="pymerkle's proof budget")
    bl.add_argument("--dir", type=Path, help="where the two databases go (default: a temp dir)")
    bl.add_argument("--output", type=Path, help="also write the results as JSON here")
    ba = bsub.add_parser(
        "api-load", help="live ingest p50/p99 with and without API clients on its event loop"
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
    ba.add_argument("--output", type=Path, help="also write the results as JSON here")
    bh = bsub.add_parser(
        "hostile", help="the ingestor's peak RSS over a backlog of refused messages"
    )
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
    bh.add_argument("--output", type=Path, help="also write the results as JSON here")
    bench.set_defaults(func=cmd_bench)
    return p


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
