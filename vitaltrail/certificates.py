"""The deployment's private CA and the server certificates it signs (the broker's, the API's,
the OpenID provider's).

Generated at first run into the deployment's volumes (never into the repository): the CA's
``ca.key`` (kept apart: only whoever issues certificates needs it) and ``ca.crt`` (what devices,
ingestors and browsers trust), and per server ``server.{crt,key}`` with its names as subject
alternative names. Keys are P-256, certificates last 825 days (the CA/Browser Forum's old
ceiling, which browsers still accept for a private CA).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.keyfile import write_private


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Authority:
    """The deployment's private CA: what signs every server certificate it hands out."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def load_or_create_ca(ca_dir: Path, days: int = 825) -> Authority:
    """The CA in ``ca_dir`` (``ca.key``, mode 0600, and ``ca.crt``), created at first use."""
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not the EC key deploy-init makes")
        return Authority(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    if key_path.exists():
        raise ValueError(f"{key_path} has no certificate beside it ({cert_path})")
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("vitaltrail deployment CA"))
        .issuer_name(_name("vitaltrail deployment CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(key, cert)


def write_server_cert(certs: Path, ca: Authority, hostnames: list[str], days: int = 825) -> None:
    """``server.key`` (0600) and ``server.crt`` for ``hostnames`` (DNS names or IP addresses;
    the first is the subject), signed by ``ca``, and the CA's ``ca.crt``, in ``certs``; kept
    if a certificate is already there."""
    if (certs / "server.crt").exists():
        return
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    _write_key(certs / "server.key", key)
    (certs / "ca.crt").write_bytes(ca.pem)
    (certs / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))


def write_tls(certs: Path, ca_dir: Path, hostnames: list[str], days: int = 825) -> None:
    """The deployment's CA (in ``ca_dir``) and a server certificate for ``hostnames`` in
    ``certs`` (see :func:`write_server_cert`); kept if already there."""
    if (certs / "server.crt").exists():
        return
    write_server_cert(certs, load_or_create_ca(ca_dir, days), hostnames, days)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
