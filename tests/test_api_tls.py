"""The API over HTTPS as the compose deployment runs it: `deploy-init` makes the certificate,
`serve`'s own uvicorn speaks TLS with it on one port and nothing in clear there; a client that
trusts the deployment's CA alone gets HSTS and a Secure session cookie; and the API's client
for an OpenID provider trusts that CA when told to (VITALTRAIL_OIDC_CA_FILE)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from cryptography import x509

from access.errors import ProviderError
from access.jwks import HttpJson, discover
from access.users import UserStore
from tests.auth_app import CHEAP, PASSWORD, sign_in_token
from tests.populated import populate
from tests.servers import free_port, serving
from vitaltrail.cli import main
from vitaltrail.deploy import SecretsLayout
from vitaltrail.runtime import api_server
from vitaltrail.services import TlsFiles
from vitaltrail.settings import Settings

PUBLIC_HOST = "ward.hospital.example"


@dataclass(frozen=True)
class Deployed:
    layout: SecretsLayout
    settings: Settings
    port: int

    @property
    def ca(self) -> Path:
        return self.layout.public / "ca.crt"

    def client(self, host: str = "localhost") -> httpx2.Client:
        """A client that trusts the deployment's CA and nothing else."""
        trust = ssl.create_default_context(cafile=self.ca)
        return httpx2.Client(base_url=f"https://{host}:{self.port}", verify=trust)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("tls")
    args = ["--data-dir", str(root / "shared"), "deploy-init", "--secrets-dir", str(root)]
    assert main([*args, "--devices", "1", "--public-host", PUBLIC_HOST]) == 0
    layout = SecretsLayout(root)
    port = free_port()
    settings = populate(
        root / "api-data",
        patients=1,
        readings=1,
        http_host="127.0.0.1",
        http_port=port,
        http_tls_cert_file=layout.api_tls / "server.crt",
        http_tls_key_file=layout.api_tls / "server.key",
    )
    users = UserStore(settings.access_db_path, hasher=CHEAP)
    users.add("nurse.ada", "clinician", PASSWORD)
    users.close()
    with serving(api_server(settings)):
        yield Deployed(layout, settings, port)


def test_deploy_init_makes_the_api_a_certificate_for_its_names(deployed: Deployed) -> None:
    cert = x509.load_pem_x509_certificate((deployed.layout.api_tls / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"api", "localhost", PUBLIC_HOST}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (deployed.layout.api_tls / "server.key").stat().st_mode & 0o077 == 0
    keycloak = deployed.layout.keycloak_tls / "server.crt"
    assert keycloak.exists()
    assert not (deployed.layout.api_tls / "ca.key").exists()
    assert deployed.settings.base_url == f"https://127.0.0.1:{deployed.port}"


def test_a_client_trusting_the_deployment_ca_gets_hsts(deployed: Deployed) -> None:
    for host in ("localhost", "127.0.0.1"):
        with deployed.client(host) as c:
            answer = c.get("/healthz")
            assert answer.status_code == 200
            assert answer.json() == {"status": "ok"}
            hsts = answer.headers["strict-transport-security"]
            assert hsts == "max-age=31536000; includeSubDomains"


def test_the_session_cookie_is_secure(deployed: Deployed) -> None:
    with deployed.client() as c:
        page = c.get("/sign-in")
        form = {"username": "nurse.ada", "password": PASSWORD}
        answer = c.post("/auth/sign-in", data={**form, "csrf_token": sign_in_token(page.text)})
        assert answer.status_code == 303, answer.text
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie")
        assert cookie.startswith("__Host-vitaltrail-session=")
        assert "; Secure" in cookie
        assert "HttpOnly" in cookie
        assert c.get("/auth/session").json()["user"] == "nurse.ada"


def test_a_client_that_does_not_trust_the_deployment_ca_is_refused(deployed: Deployed) -> None:
    with httpx2.Client() as system_trust, pytest.raises(httpx2.ConnectError):
        system_trust.get(f"https://localhost:{deployed.port}/healthz")


def test_plain_http_is_not_served_on_the_port(deployed: Deployed) -> None:
    with socket.create_connection(("127.0.0.1", deployed.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not received.startswith(b"HTTP/")
    assert b"ok" not in received


def test_the_providers_client_trusts_the_ca_it_is_given(deployed: Deployed) -> None:
    """The embedded issuer is an OpenID-discoverable issuer: fetched over TLS, it stands in for
    Keycloak behind the deployment's CA."""
    issuer = deployed.settings.embedded_issuer
    trusting = HttpJson(ca_file=deployed.ca)
    try:
        meta = discover(issuer, trusting)
        assert meta.issuer == issuer
        assert meta.jwks_uri.startswith(f"https://127.0.0.1:{deployed.port}/")
        assert "keys" in trusting(meta.jwks_uri)
    finally:
        trusting.close()
    untrusting = HttpJson()
    try:
        with pytest.raises(ProviderError):
            discover(issuer, untrusting)
    finally:
        untrusting.close()


def test_https_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "server.crt"
    cert.write_text("-")
    assert TlsFiles.of(None, None) is None
    with pytest.raises(ValueError, match="both"):
        TlsFiles.of(cert, None)
    with pytest.raises(ValueError, match="no such file"):
        TlsFiles.of(cert, tmp_path / "server.key")
