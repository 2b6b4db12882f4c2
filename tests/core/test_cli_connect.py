"""``mxscan config check --connect`` against the real private clamd and spamd, and
a closed port (issue 19.3): one line per address with the daemon's answer and the
latency, exit 2 when any address did not answer."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemons import clamd_inet, clamd_unix, require_daemon, spamd_inet

pytestmark = [pytest.mark.clamd, pytest.mark.spamd]

LINE = re.compile(r"(\S+) (\S+): (.*) \((\d+\.\d) ms\)")


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"inet:127.0.0.1:{sock.getsockname()[1]}"


def check(tmp_path: Path, clamd: list[str], spamd: list[str]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mxscan.toml"
    config.write_text(
        f"[scanner.virus]\nplugin = 'clamav'\naddress = {clamd!r}\n"
        f"[scanner.spam]\nplugin = 'spamassassin'\naddress = {spamd!r}\n"
        "[[stage]]\nrun = ['virus', 'spam']\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MXSCAN_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mxscan", "config", "check", "--connect", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def answers(out: str) -> dict[tuple[str, str], str]:
    found = {}
    for line in out.splitlines():
        match = LINE.fullmatch(line)
        if match:
            found[match.group(1), match.group(2)] = match.group(3)
            assert float(match.group(4)) >= 0
    return found


def test_every_address_of_every_daemon_answers(tmp_path: Path) -> None:
    require_daemon("clamd")
    require_daemon("spamd")
    out = check(tmp_path, [clamd_unix(), clamd_inet()], [spamd_inet()])
    assert out.returncode == 0, out.stderr
    assert answers(out.stdout) == {
        ("virus", clamd_unix()): "PONG",
        ("virus", clamd_inet()): "PONG",
        ("spam", spamd_inet()): "PONG",
    }
    assert out.stdout.rstrip().endswith("OK (2 scanners in 1 stages, 0 domain policies)")


def test_a_closed_port_is_named_and_fails_the_check(tmp_path: Path) -> None:
    require_daemon("clamd")
    require_daemon("spamd")
    dead_clamd, dead_spamd = closed_port(), closed_port()
    out = check(tmp_path, [clamd_unix(), dead_clamd], [dead_spamd, spamd_inet()])
    assert out.returncode == 2
    got = answers(out.stdout)
    assert got["virus", clamd_unix()] == "PONG"
    assert got["spam", spamd_inet()] == "PONG"
    assert got["virus", dead_clamd].startswith("FAILED: ")
    assert "Connection refused" in got["virus", dead_clamd]
    assert got["spam", dead_spamd] == f"FAILED: spamd PING failed: {dead_spamd}: Connection refused"
    assert "2 of 4 addresses did not answer" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_daemon_that_never_answers_times_out(tmp_path: Path) -> None:
    require_daemon("clamd")
    require_daemon("spamd")
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"inet:127.0.0.1:{silent.getsockname()[1]}"
        config = tmp_path / "mxscan.toml"
        config.write_text(f"[scanner.spam]\nplugin = 'spamassassin'\naddress = '{address}'\n")
        out = subprocess.run(
            [sys.executable, "-m", "mxscan", "config", "check", "--connect",
             "--connect-timeout", "1", "-c", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 2
    got = answers(out.stdout)
    assert got["spam", address] == "FAILED: no answer within 1s"
