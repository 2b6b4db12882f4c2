"""scripts/install-system-deps leaves the host's running services alone: it stops
only what its own package install started, and says so in one line.

The script runs for real, with the commands that would touch the host (apt-get,
dpkg-query, postfix, systemctl, ...) replaced by stubs on PATH and the system pid
files in a scratch directory: "running" daemons are real ``sleep`` processes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postfix import process_alive

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-system-deps"

STUBS = {
    # Every package is installed once the stub apt-get has run (or from the start).
    "dpkg-query": '[ -e "$STUB/installed" ] && printf "install ok installed"; exit 0',
    "debconf-set-selections": "cat >/dev/null",
    "gpgconf": "exit 0",
    # systemd's view: nothing is active (the pid files below are the truth here).
    "systemctl": 'echo "systemctl $*" >>"$STUB/calls"; [ "$1" != is-active ] || exit 3',
    "postfix": """echo "postfix $*" >>"$STUB/calls"
case "$1" in
  status) [ -e "$STUB/postfix-running" ] ;;
  stop) rm -f "$STUB/postfix-running" ;;
esac""",
    # The install: packages' scripts start what $STUB/starts lists.
    "apt-get": """echo "apt-get $*" >>"$STUB/calls"
case " $* " in *" install "*) ;; *) exit 0 ;; esac
touch "$STUB/installed"
for svc in $(cat "$STUB/starts" 2>/dev/null); do
  case "$svc" in
    postfix) touch "$STUB/postfix-running" ;;
    clamav-daemon) sleep 300 & echo $! >"$RUN/clamav/clamd.pid" ;;
    spamd) sleep 300 & echo $! >"$RUN/spamd.pid" ;;
  esac
done""",
}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the script refuses to run unless root")
    stub = tmp_path / "stub"
    (stub / "bin").mkdir(parents=True)
    (tmp_path / "run" / "clamav").mkdir(parents=True)
    for name, body in STUBS.items():
        path = stub / "bin" / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    yield tmp_path
    for pidfile in (tmp_path / "run").rglob("*.pid"):  # end the "daemons" left
        try:
            os.kill(int(pidfile.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass


def alive(pidfile: Path) -> bool:
    """A killed sleep may linger as a zombie of whoever adopted it: that is gone."""
    return pidfile.exists() and process_alive(int(pidfile.read_text()))


def run(host: Path) -> subprocess.CompletedProcess[str]:
    stub, run_dir = host / "stub", host / "run"
    env = {
        "PATH": f"{stub / 'bin'}:{os.environ['PATH']}",
        "STUB": str(stub),
        "RUN": str(run_dir),
        "MXSCAN_SYSTEM_RUN_DIR": str(run_dir),
        "MXSCAN_POLICY_RC_D": str(host / "policy-rc.d"),
        "MXSCAN_APT_STAMP": str(host / "apt-updated"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env
    )


def daemon(host: Path, pidfile: str) -> Path:
    """A 'system daemon' that already runs: a sleep with its pid file."""
    proc = subprocess.Popen(["sleep", "300"])
    path = host / "run" / pidfile
    path.write_text(f"{proc.pid}\n")
    return path


def test_everything_installed_touches_no_running_service(host: Path) -> None:
    (host / "stub" / "installed").touch()
    (host / "stub" / "postfix-running").touch()  # the host's own MTA
    clamd = daemon(host, "clamav/clamd.pid")
    done = run(host)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == "install-system-deps: all packages already installed (no service touched)\n"
    )
    assert (host / "stub" / "postfix-running").exists()
    assert alive(clamd)
    calls = (host / "stub" / "calls").read_text() if (host / "stub" / "calls").exists() else ""
    assert "stop" not in calls, calls


def test_install_stops_only_what_it_started_and_says_so(host: Path) -> None:
    (host / "stub" / "postfix-running").touch()  # ran before: the host's
    (host / "stub" / "starts").write_text("postfix clamav-daemon spamd\n")
    done = run(host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (host / "stub" / "postfix-running").exists()
    assert "postfix stop" not in (host / "stub" / "calls").read_text()
    assert not alive(host / "run" / "clamav" / "clamd.pid")
    assert not alive(host / "run" / "spamd.pid")
    said = [line for line in done.stdout.splitlines() if "stopped" in line]
    assert said == [
        "install-system-deps: stopped clamav-daemon spamd: the package install started "
        "them (services that ran before were left alone)"
    ], done.stdout
    assert not (host / "policy-rc.d").exists()  # its own policy-rc.d is gone again
