"""Start the real OpenID provider (``provider.mjs``, npm oidc-provider) on a free port.

It issues RFC 9068 JWT access tokens by the client-credentials grant for one registered test
client, for the audiences it is given (the first is the default; a request may name another
with ``resource=``, RFC 8707). Installed by ``scripts/oidc-provider.sh`` (``npm ci`` once).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from vitaltrail.mosquitto import free_port
from vitaltrail.processes import installed, spawn, stop

HERE = Path(__file__).parent
INSTALL = HERE.parent.parent / "scripts" / "oidc-provider.sh"


@dataclass
class OidcProvider:
    workdir: Path
    audiences: tuple[str, ...]
    scopes: str = "system/Observation.rs system/Patient.rs"
    client_id: str = "vitaltrail-test-client"
    client_secret: str = field(default="test-secret-not-for-production", repr=False)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> OidcProvider:
        subprocess.run(["bash", str(INSTALL)], check=True, stdout=subprocess.DEVNULL)
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            installed("node", "/usr/bin/node"),
            str(HERE / "provider.mjs"),
            str(self.port),
            ",".join(self.audiences),
            self.client_id,
            self.client_secret,
            self.scopes,
        ]
        self.process = spawn(command, self.workdir / "oidc-provider.log")
        discovery = f"{self.issuer}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx2.get(discovery, timeout=1).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "oidc-provider.log").read_text()
                raise RuntimeError(f"oidc-provider did not start:\n{log}")
            time.sleep(0.05)

    def token(self, **form: str) -> dict[str, Any]:
        """A client-credentials token response (``resource=`` picks another audience)."""
        response = httpx2.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": self.scopes, **form},
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def stop(self) -> None:
        stop(self.process)
        self.process = None
