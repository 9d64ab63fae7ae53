"""The console script as a user runs it: demo, simulate, devices, ingest."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from access.users import UserStore
from devices.keys import DeviceSigner, public_key_to_pem
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

VITALTRAIL = [sys.executable, "-m", "vitaltrail.cli"]


def test_demo_runs_until_ctrl_c_and_prints_commands_that_work(tmp_path: Path) -> None:
    """As `make demo` runs it: no duration, stopped by Ctrl-C (SIGINT to the process group).

    The `simulate` and `verify` commands it prints are run exactly as printed.
    """
    port = free_port()
    cmd = [*VITALTRAIL, "--data-dir", str(tmp_path / "data"), "--log-level", "WARNING", "demo"]
    proc = subprocess.Popen(
        [*cmd, "--devices", "5", "--http-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a demo that never gets going fails, not hangs
    watchdog.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops the demo"):
            break
    simulate_line = next(line.strip() for line in lines if line.split()[1:2] == ["simulate"])
    started = time.monotonic()
    simulated = subprocess.run(
        [*VITALTRAIL, *shlex.split(simulate_line)[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    watchdog.cancel()
    stdout = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "leaked" not in err
    assert f"dashboard: http://127.0.0.1:{port}/" in stdout
    assert str((tmp_path / "data").resolve()) in stdout, "the demo says where its data and keys are"
    assert "stopped: ledger holds" in stdout
    assert simulated.returncode == 0, simulated.stderr
    assert "simulated 4 devices on 2 patients" in simulated.stdout
    assert ", 0 still queued" in simulated.stdout
    assert took < 25, f"simulate --duration 10 took {took:.0f} s"
    listed = subprocess.run(
        [*VITALTRAIL, "devices", "list", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "sim-patient-001-band" in listed.stdout, "the simulation's own devices"
    assert "\npatient-001-band" in "\n" + listed.stdout, "beside the demo's"
    verify_line = next(
        line.strip() for line in stdout.splitlines() if line.split()[1:2] == ["verify"]
    )
    argv = shlex.split(verify_line)
    verified = subprocess.run(
        [*VITALTRAIL, *argv[1:]], capture_output=True, text=True, timeout=30, check=False
    )
    assert verified.returncode == 0, verified.stdout
    assert "VERIFIED" in verified.stdout
    _check_sign_in_lines(stdout, tmp_path / "data", port)
    audited = subprocess.run(
        [*VITALTRAIL, "audit", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    # the demo's accounts and ward are in the log, as an administrator's changes would be
    assert "; member-added 1; patient-added 2; team-created 1; user-added 3" in audited.stdout


def _check_sign_in_lines(stdout: str, data_dir: Path, port: int) -> None:
    """The demo's accounts: how to sign in, where the passwords are, a token command that works."""
    lines = [line.strip() for line in stdout.splitlines()]
    assert f"sign in: http://127.0.0.1:{port}/sign-in as" in lines
    assert any(line.startswith("demo-clinician (clinician") for line in lines)
    assert "demo-patient (patient patient-001)" in lines
    assert any(line.startswith("demo-admin (admin") for line in lines)
    passwords = data_dir.resolve() / "demo-accounts.txt"
    assert f"passwords: {passwords} (readable by you only)" in lines
    assert passwords.stat().st_mode & 0o777 == 0o600
    rows = [line.split("\t") for line in passwords.read_text().splitlines()]
    assert [(name, role) for name, role, _ in rows] == [
        ("demo-clinician", "clinician"),
        ("demo-patient", "patient"),
        ("demo-admin", "admin"),
    ]
    for _, _, password in rows:
        assert password not in stdout, "passwords only in the file"
    users = UserStore(data_dir / "access.db")
    assert users.authenticate("demo-patient", rows[1][2]).patient_id == "patient-001"
    users.close()
    token_line = next(line for line in lines if line.split()[1:2] == ["token"])
    token = subprocess.run(
        [*VITALTRAIL, *shlex.split(token_line)[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2, "a compact JWS, alone on stdout"
    assert "scope: user/" in token.stderr


def _simulate(
    mosquitto: Mosquitto, data_dir: Path, topic_root: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`vitaltrail simulate` of 4 devices against the test's broker, as a user runs it."""
    return subprocess.run(
        [
            *VITALTRAIL,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
            "simulate",
            "--devices",
            "4",
            "--mqtt-port",
            str(mosquitto.port),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"VITALTRAIL_TOPIC_ROOT": topic_root},
        check=False,
    )


def test_simulate_shows_progress_and_a_summary(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    run = _simulate(mosquitto, tmp_path / "data", topic_root, "--duration", "2.5", "--register")
    assert run.returncode == 0, run.stderr
    assert "readings" in run.stderr  # the progress line
    assert "acked" in run.stderr
    assert "simulated 4 devices on 2 patients" in run.stdout
    assert "0 still queued" in run.stdout
    listed = subprocess.run(
        [*VITALTRAIL, "--data-dir", str(tmp_path / "data"), "devices", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert listed.stdout.count("active") == 4


def test_devices_register_revoke_and_refuse_nonsense(tmp_path: Path) -> None:
    key = tmp_path / "band.pub.pem"
    key.write_bytes(public_key_to_pem(DeviceSigner.generate().key))
    base = [*VITALTRAIL, "--data-dir", str(tmp_path / "data"), "devices"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=30, check=False
        )

    assert run("register", "band-1", "--patient", "p-1", "--public-key", str(key)).returncode == 0
    assert "revoked band-1" in run("revoke", "band-1").stdout
    assert "revoked" in run("list").stdout
    bad = run("register", "../evil", "--patient", "p-1", "--public-key", str(key))
    assert bad.returncode == 2
    assert "invalid device id" in bad.stderr
    assert run("revoke", "nobody").returncode == 2
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("hello")
    assert (
        run("register", "band-2", "--patient", "p-1", "--public-key", str(not_a_key)).returncode
        == 2
    )


def test_ingest_stops_gracefully_on_sigterm(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    env = os.environ | {"VITALTRAIL_TOPIC_ROOT": topic_root, "VITALTRAIL_CLIENT_ID": "sigterm-test"}
    proc = subprocess.Popen(
        [
            *VITALTRAIL,
            "--data-dir",
            str(tmp_path / "data"),
            "ingest",
            "--mqtt-port",
            str(mosquitto.port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert "ingesting from" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_simulate_runs_scenarios_against_a_broker(
    mosquitto: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    """The ward it prints is the ward it publishes: a silenced wristband and a patient off the
    ward sign fewer readings, and nothing is left queued (a gap is never replayed)."""
    from simulator import Scenario, apply_scenarios, build_ward
    from simulator.ward import SIMULATED_WARD

    duration, scenarios = 3.0, ["silent-device:1:1", "off-ward:2:2"]
    flags = [arg for s in scenarios for arg in ("--scenario", s)]
    run = _simulate(mosquitto, tmp_path / "data", topic_root, "--duration", str(duration), *flags)
    assert run.returncode == 0, run.stderr
    assert "scenario: sim-patient-001-band goes silent at 0:01" in run.stdout
    assert "scenario: sim-patient-002 is off the ward from 0:02 to 20:02" in run.stdout
    ward = build_ward(4, 1, offline_rate=0.1, name=SIMULATED_WARD)
    expected = len(list(ward.schedule(0, duration)))
    apply_scenarios(ward, [Scenario.parse(s) for s in scenarios])
    signed = len(list(ward.schedule(0, duration)))
    assert signed < expected
    assert f"{signed} readings signed, {signed} acknowledged by the broker" in run.stdout
    assert ", 0 still queued" in run.stdout
