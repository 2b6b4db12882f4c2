"""A failed start says what failed, and only that (issue 19.4)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from mxscan.adapters.milter.server import MilterServer
from tests.support import scanners
from tests.support.milter import RULES
from tests.support.milter import cli_run as run


async def test_a_port_in_use_is_one_error_line_and_no_drain_message(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text(RULES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, text = await run("--config", str(cfg), "--listen", f"inet:127.0.0.1:{port}")
    assert code == 2
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("mxscan: error:") and str(port) in lines[0]
    assert "drain timeout" not in text


async def test_stop_with_nothing_in_flight_reports_no_drain_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MilterServer(scanners.engine(scanners.SubjectRule()))
    with caplog.at_level(logging.DEBUG, logger="mxscan"):
        await server.stop(0)
    assert "drain timeout" not in caplog.text
