"""Debian's miltertest (OpenDKIM's Lua-driven MTA simulator) against the real server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from tests.support import scanners
from tests.support.daemons import require_daemon
from tests.support.threaded import ThreadedMilter

HERE = Path(__file__).parent
pytestmark = pytest.mark.miltertest


@pytest.fixture(scope="module")
def miltertest() -> str:
    require_daemon("miltertest")
    path = shutil.which("miltertest")
    assert path is not None
    return path


@pytest.fixture
def milter(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "milter.sock"
    running = ThreadedMilter(
        lambda: MilterServer(scanners.engine(scanners.AddHeader(), scanners.SubjectRule())),
        UnixAddress(str(sock)),
    ).start()
    yield f"unix:{sock}"
    running.stop()


@pytest.mark.parametrize("script", ["mt_messages.lua", "mt_actions.lua"])
def test_miltertest_script(miltertest: str, milter: str, script: str) -> None:
    proc = subprocess.run(
        [miltertest, "-v", "-s", str(HERE / script), "-D", f"SOCK={milter}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout
