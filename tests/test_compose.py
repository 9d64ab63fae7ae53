"""docker-compose.yml: valid against the Compose schema, its files present, its commands real."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from vitaltrail.cli import parser
from vitaltrail.deploy import CONSUMERS, SecretsLayout

ROOT = Path(__file__).parents[1]
# The schema names draft-07 (as "https://json-schema.org/draft-07/schema", without the "#" the
# library keys its metaschemas by): validate with draft 7 explicitly.
VALIDATOR = jsonschema.Draft7Validator(
    json.loads((Path(__file__).parent / "vectors" / "compose-spec.json").read_text())
)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_the_compose_file_validates_against_the_compose_schema() -> None:
    VALIDATOR.validate(_compose())


def test_a_broken_compose_file_does_not_validate() -> None:
    broken = _compose()
    broken["services"]["ingest-a"]["restart"] = ["always"]  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


def test_it_has_every_service_the_deployment_needs() -> None:
    services = _compose()["services"]
    assert {
        "mosquitto",
        "influxdb",
        "grafana",
        "ingest-a",
        "ingest-b",
        "api",
        "witness",
        "simulator",
        "postgres",
        "setup",
    } <= set(services)
    a, b = services["ingest-a"]["environment"], services["ingest-b"]["environment"]
    assert a["VITALTRAIL_LEDGER_URL"] == b["VITALTRAIL_LEDGER_URL"]  # one shared log
    assert a["VITALTRAIL_CLIENT_ID"] != b["VITALTRAIL_CLIENT_ID"]
    # one broker identity per replica, its client id bound to its user (deploy-init's roles)
    for env in (a, b):
        assert env["VITALTRAIL_MQTT_USERNAME"] == env["VITALTRAIL_CLIENT_ID"]
    setup = services["setup"]["command"][0]
    assert all(f"--ingestor {env['VITALTRAIL_CLIENT_ID']}" in setup for env in (a, b))
    assert "VITALTRAIL_SHARE_GROUP" not in a  # the default group: one shared subscription


def test_every_file_it_mounts_from_the_repository_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"


def test_every_vitaltrail_command_in_it_parses() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        if service.get("image") != "vitaltrail:latest" or name == "setup":
            continue
        args = service["command"]
        parsed = parser().parse_args(args if isinstance(args, list) else shlex.split(args))
        assert parsed.command in {"ingest", "serve", "witness", "simulate"}, name
    setup = compose["services"]["setup"]["command"][0]
    first = setup.split("&&")[0].split()
    assert parser().parse_args(first[1:]).command == "deploy-init"


def test_no_secret_is_written_in_it() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("PASSWORD:", "TOKEN:"):
        for line in text.splitlines():
            if secret in line and not line.strip().startswith("#"):
                assert "${" in line or "_FILE" in line or "environment:" in line, line


# Who may see which secret (issue #8, item 7). `setup` mounts each secrets volume at
# /deploy/<directory>, the directory deploy-init writes that secret into (vitaltrail/deploy.py).
FORBIDDEN = {
    "api": {"ca", "broker", "handout", "witness", "ledger", "simulator"},
    "ingest": {"ca", "broker", "handout", "witness", "simulator"},
    "witness": {"ca", "broker", "handout", "ledger", "simulator"},
}


def _secret_directories(compose: dict[str, Any]) -> dict[str, str]:
    """Named volume -> the deploy-init directory it holds, from the setup service's mounts."""
    setup = compose["services"]["setup"]
    assert "--secrets-dir /deploy " in setup["command"][0]
    held = {}
    for volume in setup["volumes"]:
        name, target = volume.split(":")[:2]
        if target.startswith("/deploy/"):
            held[name] = target.removeprefix("/deploy/")
    return held


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's named volumes -> where it mounts them (bind mounts of repository files are
    not secrets)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith("."):
            mounts[source] = target
    return mounts


def _sees(compose: dict[str, Any], name: str) -> set[str]:
    """The deploy-init directories service ``name`` can read."""
    held = _secret_directories(compose)
    service = compose["services"][name]
    return {held[volume] for volume in _mounts(service) if volume in held}


def test_setup_mounts_a_volume_for_every_directory_deploy_init_writes() -> None:
    layout = SecretsLayout(Path("/deploy"))
    written = {
        layout.ca,
        layout.broker,
        layout.ledger_key.parent,
        layout.witness_key.parent,
        layout.handout.parent,
        layout.simulator,
        layout.public,
        layout.own("ingest-a"),
        layout.own("ingest-b"),
        layout.own("api"),
    }
    held = _secret_directories(_compose())
    assert {f"/deploy/{d}" for d in held.values()} == {str(p) for p in written}
    assert len(held) == len(written), "one volume per directory"


@pytest.mark.parametrize("name", ["api", "ingest-a", "ingest-b", "witness"])
def test_no_log_service_sees_a_secret_it_does_not_use(name: str) -> None:
    kind = "ingest" if name.startswith("ingest-") else name
    visible = _sees(_compose(), name)
    assert not visible & FORBIDDEN[kind], f"{name} can read {visible & FORBIDDEN[kind]}"
    others = {f"ingest-{x}" for x in "ab"} - {name}
    assert not visible & others, f"{name} can read another replica's broker password"


def test_each_service_sees_exactly_the_secrets_it_uses() -> None:
    compose = _compose()
    for name in compose["services"]:
        if name == "setup":
            continue
        kind = "ingest" if name.startswith("ingest-") else name
        own = {name} if name in _secret_directories(compose).values() else set()
        allowed = CONSUMERS.get(kind, frozenset()) | own | {"public"}
        sees = _sees(compose, name)
        assert sees <= allowed, f"{name} sees {sees - allowed}"
        assert CONSUMERS.get(kind, frozenset()) | own <= sees, f"{name} lacks its secrets"
    holders = {name for name in compose["services"] if "ca" in _sees(compose, name)}
    assert holders == {"setup"}, "the CA's private key is used by setup only"


def test_every_path_a_service_is_given_is_on_one_of_its_mounts() -> None:
    for name, service in _compose()["services"].items():
        if service.get("image") != "vitaltrail:latest" or name == "setup":
            continue
        targets = [*_mounts(service).values(), "/run/secrets"]
        values = [str(v) for v in (service.get("environment") or {}).values()]
        paths = [v.split("passfile=")[-1] for v in values if v.startswith("/") or "passfile=" in v]
        paths += [a for a in service["command"] if a.startswith("/") and "." in a]
        for path in paths:
            assert any(path.startswith(t + "/") for t in targets), f"{name}: {path} not mounted"
