"""Start a real Mosquitto with the project's configuration (for `vitaltrail bench` and the tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vitaltrail.processes import installed, spawn, stop

PROJECT_CONF = Path(__file__).parent / "mosquitto.conf"
DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",  # the eclipse-mosquitto image
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s}s")


def mosquitto_binary() -> str:
    return installed("mosquitto", "/usr/sbin/mosquitto")


def dynsec_plugin() -> str:
    """Mosquitto's dynamic-security plugin, where Debian's package installs it."""
    for candidate in DYNSEC_PLUGINS:
        if Path(candidate).exists():
            return candidate
    raise RuntimeError(
        "mosquitto_dynamic_security.so is not installed: `make test` installs mosquitto "
        "(scripts/system-deps.sh)"
    )


@dataclass
class Mosquitto:
    """A Mosquitto process: the project's configuration plus a loopback listener and a data dir.

    ``access``: the listener and who may connect on it (the deployment's TLS, passwords and
    roles); unset, anonymous clients on ``127.0.0.1:<port>``."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    access: str | None = None
    extra_conf: str = ""  # appended last, e.g. a benchmark's `persistence false`

    def start(self) -> Mosquitto:
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            PROJECT_CONF.read_text()
            + (self.access or f"\nallow_anonymous true\nlistener {self.port} 127.0.0.1\n")
            + f"persistence_location {self.workdir}/\n"
            # as root, mosquitto would switch to a user that cannot write this directory
            + ("user root\n" if os.geteuid() == 0 else "")
            + self.extra_conf
        )
        self.process = spawn([mosquitto_binary(), "-c", str(conf)], self.workdir / "mosquitto.log")
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        stop(self.process)
        self.process = None
