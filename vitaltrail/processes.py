"""What every server the tests and benchmarks start has in common: finding it, stopping it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def installed(name: str, fallback: str) -> str:
    """The path of a Debian-packaged server binary, or a clear error saying what installs it."""
    found = shutil.which(name) or fallback
    if not Path(found).exists():
        raise RuntimeError(
            f"{name} is not installed: `make test` installs it (scripts/system-deps.sh)"
        )
    return found


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
