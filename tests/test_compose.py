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
