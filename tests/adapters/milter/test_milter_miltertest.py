"""Debian's miltertest (OpenDKIM's Lua-driven MTA simulator) against the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import milter_scanners as scanners
import pytest
from milter_thread import ThreadedMilter

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress

HERE = Path(__file__).parent
pytestmark = pytest.mark.miltertest


@pytest.fixture(scope="module")
def miltertest() -> str:
    path = shutil.which("miltertest")
    if path is None:
        if os.environ.get("MXSCAN_REQUIRE_DAEMONS") == "1":
            pytest.fail("miltertest is not installed and MXSCAN_REQUIRE_DAEMONS=1")
        pytest.skip("miltertest is not installed (Debian package miltertest)")
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
