"""What a real deployment's Mosquitto needs for TLS and passwords.

Generated at first run into the deployment's volumes (never into the repository): a private
CA (``ca.crt``, what devices and ingestors trust, and ``ca.key``, kept apart: only whoever
issues certificates needs it), the server's ``server.{crt,key}``, and passwords hashed the way
Mosquitto 2 hashes them (PBKDF2-SHA512, a 12-byte salt, 101 iterations: ``mosquitto_passwd``'s
and the dynamic-security plugin's defaults). The passwords are 192-bit random tokens, so the
iteration count is not what keeps them safe.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ledger.keyfile import write_private

PBKDF2_ITERATIONS = 101  # Mosquitto 2's default
SALT_BYTES = 12  # Mosquitto 2's SALT_LEN: the dynamic-security plugin refuses any other length


@dataclass(frozen=True)
class PasswordHash:
    """A password as Mosquitto stores it: never the password itself."""

    salt: bytes
    digest: bytes
    iterations: int = PBKDF2_ITERATIONS

    @classmethod
    def of(cls, password: str, salt: bytes | None = None) -> PasswordHash:
        salt = salt or secrets.token_bytes(SALT_BYTES)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
        return cls(salt, digest)

    def matches(self, password: str) -> bool:
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), self.salt, self.iterations)
        return secrets.compare_digest(digest, self.digest)

    def dynsec_fields(self) -> dict[str, str | int]:
        """The ``password``, ``salt`` and ``iterations`` of a dynamic-security client."""
        return {
            "password": base64.b64encode(self.digest).decode(),
            "salt": base64.b64encode(self.salt).decode(),
            "iterations": self.iterations,
        }


def new_password() -> str:
    return secrets.token_urlsafe(24)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_tls(certs: Path, ca_dir: Path, hostnames: list[str], days: int = 825) -> None:
    """A private CA (``ca_dir/ca.key``; its certificate in ``certs``) and a server certificate
    for ``hostnames`` in ``certs``; kept if already there."""
    if (certs / "server.crt").exists():
        return
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("vitaltrail deployment CA"))
        .issuer_name(_name("vitaltrail deployment CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
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
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    private = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    write_private(ca_dir / "ca.key", ca_key.private_bytes(pem, private, none))
    write_private(certs / "server.key", key.private_bytes(pem, private, none))
    (certs / "ca.crt").write_bytes(ca.public_bytes(pem))
    (certs / "server.crt").write_bytes(server.public_bytes(pem))
