"""Start a real influxd (InfluxDB 1.x, Debian's package) with the project's configuration."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

from vitaltrail.mosquitto import free_port
from vitaltrail.processes import installed, spawn, stop

PROJECT_CONF = Path(__file__).parent / "influxdb.conf"


def influxd_binary() -> str:
    return installed("influxd", "/usr/bin/influxd")


@dataclass
class Influxd:
    workdir: Path
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 30) -> Influxd:
        self.http_port = self.http_port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            PROJECT_CONF.read_text()
            .replace("{root}", str(self.workdir))
            .replace("{rpc_port}", str(free_port()))
            .replace("{http_port}", str(self.http_port))
        )
        self.process = spawn([influxd_binary(), "-config", str(conf)], self.workdir / "influxd.log")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx2.get(self.url + "/ping", timeout=1).status_code == 204:
                    return self
            except httpx2.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"influxd did not start; see {self.workdir / 'influxd.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
