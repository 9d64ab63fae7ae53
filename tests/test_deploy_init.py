"""`vitaltrail deploy-init`: every secret in the directory of the one service that uses it,
device passwords in clear only in the hand-out file, the broker holding hashes, and a second
run keeping everything the first made."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from devices.registry import DeviceRegistry
from simulator.ward import SIMULATED_WARD
from vitaltrail.broker_access import read_hashes
from vitaltrail.cli import main
from vitaltrail.deploy import SecretsLayout, pgpass_line

INGESTORS = ["ingest-a", "ingest-b"]


def deploy_init(tmp_path: Path, devices: int = 3, *extra: str) -> SecretsLayout:
    (tmp_path / "db_password").write_text("s3cret\n")
    args = ["--data-dir", str(tmp_path / "shared"), "deploy-init"]
    args += ["--secrets-dir", str(tmp_path / "deploy"), "--devices", str(devices)]
    args += ["--db-password-file", str(tmp_path / "db_password"), *extra]
    assert main(args) == 0
    return SecretsLayout(tmp_path / "deploy")


def handout(layout: SecretsLayout) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(layout.handout.read_text())
    return loaded


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_secret_is_in_the_directory_of_its_user(tmp_path: Path) -> None:
    layout = deploy_init(tmp_path)
    for secret in (
        layout.ca / "ca.key",
        layout.broker / "certs" / "server.key",
        layout.access_file,
        layout.ledger_key,
        layout.witness_key,
        layout.handout,
        *(layout.own(name) / "mqtt.password" for name in INGESTORS),
        *(layout.own(name) / "pgpass" for name in [*INGESTORS, "api"]),
        layout.api_tls / "server.key",
        layout.keycloak_tls / "server.key",
    ):
        assert private(secret), f"{secret} is readable by others"
    assert sorted(p.name for p in layout.public.iterdir()) == [
        "ca.crt",
        "ledger.pub",
        "witness.pub",
    ]
    assert not list(layout.broker.rglob("ca.key")), "the CA key is not the broker's"
    assert not list(layout.ledger_key.parent.glob("witness*")), "the witness key is apart"
    assert (layout.own("api") / "pgpass").read_text() == "*:*:*:*:s3cret\n"
    assert len(list((layout.simulator / SIMULATED_WARD / "keys").iterdir())) == 3


def test_the_broker_holds_hashes_and_the_handout_the_only_clear_device_passwords(
    tmp_path: Path,
) -> None:
    layout = deploy_init(tmp_path)
    hashes = read_hashes(layout.access_file)
    devices = handout(layout)
    ingestors = {n: (layout.own(n) / "mqtt.password").read_text().strip() for n in INGESTORS}
    assert set(hashes) == set(devices) | set(INGESTORS)
    access_text = layout.access_file.read_text()
    for user, password in (devices | ingestors).items():
        assert hashes[user].matches(password)
        assert password not in access_text
    for directory in (layout.root / name for name in ("broker", "public", *INGESTORS, "api")):
        for path in directory.rglob("*"):
            if path.is_file():
                assert not any(p in path.read_text() for p in devices.values()), path


def test_each_client_is_bound_to_its_client_id_and_a_device_may_only_publish(
    tmp_path: Path,
) -> None:
    layout = deploy_init(tmp_path)
    document = json.loads(layout.access_file.read_text())
    assert not any(document["defaultACLAccess"].values()), "whatever no role allows is refused"
    roles = {r["rolename"]: r["acls"] for r in document["roles"]}
    for client in document["clients"]:
        assert client["clientid"] == client["username"]
        (role,) = client["roles"]
        acls = roles[role["rolename"]]
        if client["username"] in INGESTORS:
            assert {(a["acltype"], a["topic"]) for a in acls} == {
                ("subscribeLiteral", "$share/ingest/vitaltrail/v1/+/readings"),
                ("unsubscribeLiteral", "$share/ingest/vitaltrail/v1/+/readings"),
                ("publishClientReceive", "vitaltrail/v1/+/readings"),
            }
        else:
            topic = f"vitaltrail/v1/{client['username']}/readings"
            assert [(a["acltype"], a["topic"], a["allow"]) for a in acls] == [
                ("publishClientSend", topic, True)
            ]


def test_a_second_run_keeps_every_secret_and_hands_out_only_new_devices(tmp_path: Path) -> None:
    layout = deploy_init(tmp_path, 3)
    first = {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}
    hashes = read_hashes(layout.access_file)
    layout.handout.unlink()  # the devices were provisioned
    deploy_init(tmp_path, 3)
    assert not layout.handout.exists(), "no clear password can be made again"
    assert read_hashes(layout.access_file) == hashes
    for path, data in first.items():
        if path != layout.handout:
            assert path.read_bytes() == data, f"{path} changed"

    deploy_init(tmp_path, 4)  # one more device in the ward
    (added,) = handout(layout)
    assert added not in hashes
    assert read_hashes(layout.access_file).items() >= hashes.items()


def test_an_ingestor_whose_password_file_is_gone_gets_a_new_password(tmp_path: Path) -> None:
    layout = deploy_init(tmp_path)
    before = read_hashes(layout.access_file)
    (layout.own("ingest-b") / "mqtt.password").unlink()
    deploy_init(tmp_path)
    after = read_hashes(layout.access_file)
    assert after["ingest-a"] == before["ingest-a"]
    assert after["ingest-b"] != before["ingest-b"]
    assert after["ingest-b"].matches((layout.own("ingest-b") / "mqtt.password").read_text().strip())


def test_a_revoked_device_is_taken_off_the_broker(tmp_path: Path) -> None:
    layout = deploy_init(tmp_path)
    victim = sorted(handout(layout))[0]
    registry = DeviceRegistry(tmp_path / "shared" / "registry.db")
    registry.revoke(victim)
    registry.close()
    deploy_init(tmp_path)
    assert victim not in read_hashes(layout.access_file)
    assert len(read_hashes(layout.access_file)) == 2 + 2


def test_ingestor_replicas_are_named_on_the_command_line(tmp_path: Path) -> None:
    layout = deploy_init(tmp_path, 3, "--ingestor", "ingest-x")
    assert {"ingest-x"} == {u for u in read_hashes(layout.access_file) if u.startswith("ingest")}
    assert (layout.own("ingest-x") / "mqtt.password").exists()
    assert not layout.own("ingest-a").exists()


@pytest.mark.parametrize(
    ("password", "line"),
    [("plain", "*:*:*:*:plain\n"), ("a:b\\c", "*:*:*:*:a\\:b\\\\c\n")],
)
def test_the_pgpass_line_escapes_what_libpq_reads_as_separators(password: str, line: str) -> None:
    assert pgpass_line(password) == line


def test_a_deployment_made_before_keeps_its_keys_and_they_leave_the_shared_volume(
    tmp_path: Path,
) -> None:
    """The layout before issue #8: keys and witness state in the data directory (`shared`)."""
    shared = tmp_path / "shared"
    deploy_init(tmp_path)  # makes keys in tmp_path/deploy; move them where they used to be
    layout = SecretsLayout(tmp_path / "deploy")
    ledger_key = layout.ledger_key.read_text()
    witness_pub = (layout.public / "witness.pub").read_text()
    layout.ledger_key.parent.rename(shared / "keys")
    layout.witness_key.parent.rename(shared / "witness")
    layout.simulator.rename(shared / "simulator")

    deploy_init(tmp_path)
    assert layout.ledger_key.read_text() == ledger_key, "the log keeps its key"
    assert (layout.public / "witness.pub").read_text() == witness_pub
    assert len(list((layout.simulator / SIMULATED_WARD / "keys").iterdir())) == 3
    assert not any((shared / d).exists() for d in ("keys", "witness", "simulator"))


def _signed_by(cert_path: Path, ca_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_a_deployment_made_before_gets_https_certificates_from_the_ca_its_devices_trust(
    tmp_path: Path,
) -> None:
    """Before issue #9 the CA's certificate was kept with the broker's only, and there were no
    API or Keycloak certificates: the next run signs them with that same CA."""
    layout = deploy_init(tmp_path)
    trusted = (layout.public / "ca.crt").read_bytes()
    (layout.ca / "ca.crt").unlink()
    for directory in (layout.api_tls, layout.keycloak_tls):
        for path in directory.iterdir():
            path.unlink()
    deploy_init(tmp_path, 3, "--public-host", "ward.example")
    assert (layout.ca / "ca.crt").read_bytes() == trusted
    assert (layout.public / "ca.crt").read_bytes() == trusted
    for certs in (layout.broker / "certs", layout.api_tls, layout.keycloak_tls):
        assert _signed_by(certs / "server.crt", layout.public / "ca.crt"), certs
