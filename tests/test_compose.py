"""docker-compose.yml: valid against the Compose schema, its files present, its commands real."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.compose_file import ROOT, environment, interpolate, variables
from tests.compose_file import compose as _compose
from vitaltrail.cli import parser
from vitaltrail.deploy import CONSUMERS, SecretsLayout
from vitaltrail.settings import Settings

# The schema names draft-07 (as "https://json-schema.org/draft-07/schema", without the "#" the
# library keys its metaschemas by): validate with draft 7 explicitly.
VALIDATOR = jsonschema.Draft7Validator(
    json.loads((Path(__file__).parent / "vectors" / "compose-spec.json").read_text())
)


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
        "keycloak",
        "keycloak-db",
    } <= set(services)
    a, b = services["ingest-a"]["environment"], services["ingest-b"]["environment"]
    assert a["VITALTRAIL_LEDGER_URL"] == b["VITALTRAIL_LEDGER_URL"]  # one shared log
    # what the ingestors know of each device is what the API's alerts and device route read
    api = services["api"]["environment"]
    assert a["VITALTRAIL_DEVICE_STATUS_FILE"] == b["VITALTRAIL_DEVICE_STATUS_FILE"]
    assert api["VITALTRAIL_DEVICE_STATUS_FILE"] == a["VITALTRAIL_DEVICE_STATUS_FILE"]
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
        layout.keycloak_tls.parent,
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


def _published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of each published port."""
    pairs = []
    for port in service["ports"]:
        host, container = str(port).split(":")[-2:]
        pairs.append((int(host), int(container)))
    return pairs


def _path_on_mount(service: dict[str, Any], path: str) -> bool:
    return any(path.startswith(target + "/") for target in _mounts(service).values())


def test_the_api_serves_https_only_with_the_certificate_deploy_init_made_for_it() -> None:
    """Issue #9: the compose API behind TLS. It publishes one port, and speaks TLS there
    (tests/test_api_tls.py runs `serve` with deploy-init's certificate the same way)."""
    compose = _compose()
    api = compose["services"]["api"]
    args = parser().parse_args(api["command"])
    assert _published(api) == [(8443, args.http_port)]
    env = environment("api")
    settings = Settings(
        http_host=args.http_host,
        http_port=args.http_port,
        http_tls_cert_file=Path(env["VITALTRAIL_HTTP_TLS_CERT_FILE"]),
        http_tls_key_file=Path(env["VITALTRAIL_HTTP_TLS_KEY_FILE"]),
        public_url=env["VITALTRAIL_PUBLIC_URL"],
    )
    assert settings.base_url == "https://localhost:8443"
    # the certificate and key are deploy-init's, in the api's own secrets volume
    layout = SecretsLayout(Path("/deploy"))
    held = {d: v for v, d in _secret_directories(compose).items()}
    target = _mounts(api)[held["api"]]
    tls = layout.api_tls.relative_to(layout.own("api"))
    assert settings.http_tls_cert_file == Path(target) / tls / "server.crt"
    assert settings.http_tls_key_file == Path(target) / tls / "server.key"
    assert (
        "--public-host ${VITALTRAIL_PUBLIC_HOST:-localhost}"
        in compose["services"]["setup"]["command"][0]
    )


def test_keycloak_runs_in_production_mode_with_its_own_database_and_the_realm_file() -> None:
    compose = _compose()
    keycloak = compose["services"]["keycloak"]
    image, _, tag = keycloak["image"].rpartition(":")
    assert image == "quay.io/keycloak/keycloak"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), "pin an exact version"
    command = keycloak["command"][0]
    assert "kc.sh start --import-realm" in command
    assert "start-dev" not in command
    volumes = keycloak["volumes"]
    assert "./deploy/keycloak:/opt/keycloak/data/import:ro" in volumes
    realm = json.loads((ROOT / "deploy/keycloak/vitaltrail-realm.json").read_text())
    env = environment("keycloak")
    assert env["KC_HTTP_ENABLED"] == "false"
    for name in ("KC_HTTPS_CERTIFICATE_FILE", "KC_HTTPS_CERTIFICATE_KEY_FILE"):
        assert _path_on_mount(keycloak, env[name]), name
    # its own PostgreSQL: not the ledger's server, user or password
    assert env["KC_DB"] == "postgres"
    assert env["KC_DB_URL"] == "jdbc:postgresql://keycloak-db:5432/keycloak"
    database = compose["services"]["keycloak-db"]
    assert database["environment"]["POSTGRES_USER"] == env["KC_DB_USERNAME"]
    assert keycloak["depends_on"]["keycloak-db"]["condition"] == "service_healthy"
    assert set(keycloak["secrets"]) == {"keycloak_db_password", "keycloak_admin_password"}
    assert set(database["secrets"]) == {"keycloak_db_password"}
    for secret in keycloak["secrets"]:
        assert f"/run/secrets/{secret}" in command
    # the realm file's placeholders are in its environment
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", json.dumps(realm)))
    assert placeholders == {"VITALTRAIL_PUBLIC_HOST"}
    assert placeholders <= set(env)
    assert _published(keycloak) == [(8444, 8443)]
    assert env["KC_HOSTNAME"] == "https://localhost:8444"


def test_the_api_trusts_keycloak_by_its_discovery_url() -> None:
    """The issuer is Keycloak's public name (what its tokens say); the discovery document is
    fetched over the compose network, its TLS checked against the deployment's CA."""
    compose = _compose()
    api, keycloak = environment("api"), environment("keycloak")
    realm = json.loads((ROOT / "deploy/keycloak/vitaltrail-realm.json").read_text())
    issuer = f"{keycloak['KC_HOSTNAME']}/realms/{realm['realm']}"
    assert api["VITALTRAIL_OIDC_ISSUER"] == issuer
    internal_port = _published(compose["services"]["keycloak"])[0][1]
    assert api["VITALTRAIL_OIDC_DISCOVERY_URL"] == (
        f"https://keycloak:{internal_port}/realms/{realm['realm']}/.well-known/openid-configuration"
    )
    assert keycloak["KC_HOSTNAME_BACKCHANNEL_DYNAMIC"] == "true"
    assert api["VITALTRAIL_OIDC_CA_FILE"] == "/public/ca.crt"
    assert _path_on_mount(compose["services"]["api"], api["VITALTRAIL_OIDC_CA_FILE"])
    assert api["VITALTRAIL_OIDC_ROLES_CLAIM"] == "realm_access.roles"
    assert api["VITALTRAIL_OIDC_REQUIRE_AT_JWT"] == "false"
    assert api["VITALTRAIL_OIDC_APP_ROLE"] in {r["name"] for r in realm["roles"]["realm"]}
    assert "keycloak" in compose["services"]["api"]["depends_on"]


def test_every_value_it_reads_from_dot_env_is_in_the_example() -> None:
    example = (ROOT / "deploy/env.example").read_text()
    named = {line.split("=")[0] for line in example.splitlines() if "=" in line}
    from_secrets = {s["environment"] for s in _compose()["secrets"].values()}
    assert variables() | from_secrets <= named
    assert interpolate("${X:-a}/${Y:?set it}$$") == "a/<Y>$"
