"""contrib/ for the quarantine: the expiry service and timer pass systemd-analyze,
and the cron line runs the command the service runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.support.daemons import REPO_ROOT as REPO
from tests.support.tools import require

SYSTEMD = REPO / "contrib" / "systemd"
MXSCAN = Path(sys.executable).parent / "mxscan"


def test_expire_service_and_timer_verify(tmp_path: Path) -> None:
    for name in ("mxscan-quarantine-expire.service", "mxscan-quarantine-expire.timer"):
        text = (SYSTEMD / name).read_text().replace("/usr/local/bin/mxscan", str(MXSCAN))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [require("systemd-analyze"), "verify", "--man=no",
         str(tmp_path / "mxscan-quarantine-expire.timer"),
         str(tmp_path / "mxscan-quarantine-expire.service")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_cron_line_runs_the_services_command() -> None:
    lines = [
        line
        for line in (REPO / "contrib" / "cron" / "mxscan-quarantine").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    (line,) = lines
    fields = line.split(None, 6)
    assert fields[5] == "mxscan"  # cron.d: the user field
    service = (SYSTEMD / "mxscan-quarantine-expire.service").read_text()
    exec_start = next(x for x in service.splitlines() if x.startswith("ExecStart="))
    assert shlex.split(fields[6]) == shlex.split(exec_start.removeprefix("ExecStart="))
    assert "expire" in shlex.split(fields[6])
