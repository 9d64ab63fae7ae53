"""What a real deployment's Mosquitto needs: TLS material and per-client passwords.

Generated at first run into a directory of the deployment (never into the repository):
``certs/ca.crt`` (what devices and ingestors trust), ``certs/server.{crt,key}``, and a
Mosquitto password file in its own format (``user:$7$101$<salt>$<PBKDF2-SHA512>``, what
``mosquitto_passwd`` writes), with the clear passwords in ``credentials.json`` (mode 0600) for
provisioning the devices.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ledger.keyfile import write_private

PBKDF2_ITERATIONS = 101  # Mosquitto 2's default for $7$ hashes


def password_line(user: str, password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded_salt, encoded_digest = (base64.b64encode(b).decode() for b in (salt, digest))
    return f"{user}:$7${PBKDF2_ITERATIONS}${encoded_salt}${encoded_digest}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_tls(directory: Path, hostnames: list[str], days: int = 825) -> None:
    """A private CA and a server certificate for ``hostnames`` (kept if already there)."""
    if (directory / "server.crt").exists():
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
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    private = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    write_private(directory / "ca.key", ca_key.private_bytes(pem, private, none))
    write_private(directory / "server.key", key.private_bytes(pem, private, none))


def write_passwords(directory: Path, users: list[str]) -> dict[str, str]:
    """Passwords for ``users`` (existing ones kept), the Mosquitto password file, and the
    clear-text credentials for provisioning; returns user -> password."""
    credentials_path = directory / "credentials.json"
    known: dict[str, str] = (
        json.loads(credentials_path.read_text()) if credentials_path.exists() else {}
    )
    for user in users:
        known.setdefault(user, secrets.token_urlsafe(24))
    write_private(credentials_path, json.dumps(known, indent=2).encode())
    lines = [password_line(user, password) for user, password in sorted(known.items())]
    write_private(directory / "passwd", ("\n".join(lines) + "\n").encode())
    return known
