"""``mxscan config check --connect`` against real clamds and the private spamd, and
a closed port (issue 19.3): one line per address with the daemon's answer and the
latency, exit 2 when any address did not answer, or is a clamd that answers OK
past its limits (issue 20). The clamds are the test's own, so that whether they
report their limits (AlertExceedsMax) is known, not the host's."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import require_daemon, spamd_inet
from tests.support.private_clamd import private_clamd

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
        # a generous timeout: a loaded CI machine must not turn a slow answer into a failure
        [
            sys.executable,
            "-m",
            "mxscan",
            "config",
            "check",
            "--connect",
            "--connect-timeout",
            "60",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def clamd() -> Iterator[dict[str, str]]:
    """A clamd set up as scripts/daemons and docs/clamav.md say (AlertExceedsMax yes)."""
    with private_clamd("connect", ALERT_EXCEEDS_MAX="yes") as addresses:
        yield addresses


@pytest.fixture(scope="module")
def silent_clamd() -> Iterator[dict[str, str]]:
    """A clamd with clamd's own default, AlertExceedsMax no."""
    with private_clamd("connect-silent", ALERT_EXCEEDS_MAX="no") as addresses:
        yield addresses


def answers(out: str) -> dict[tuple[str, str], str]:
    found = {}
    for line in out.splitlines():
        match = LINE.fullmatch(line)
        if match:
            found[match.group(1), match.group(2)] = match.group(3)
            assert float(match.group(4)) >= 0
    return found


def test_every_address_of_every_daemon_answers(tmp_path: Path, clamd: dict[str, str]) -> None:
    require_daemon("spamd")
    out = check(tmp_path, [clamd["unix"], clamd["inet"]], [spamd_inet()])
    assert out.returncode == 0, out.stderr
    assert answers(out.stdout) == {
        ("virus", clamd["unix"]): "PONG, reports its limits",
        ("virus", clamd["inet"]): "PONG, reports its limits",
        ("spam", spamd_inet()): "PONG",
    }
    assert out.stdout.rstrip().endswith("OK (2 scanners in 1 stages, 0 domain policies)")


def test_a_closed_port_is_named_and_fails_the_check(tmp_path: Path, clamd: dict[str, str]) -> None:
    require_daemon("spamd")
    dead_clamd, dead_spamd = closed_port(), closed_port()
    out = check(tmp_path, [clamd["unix"], dead_clamd], [dead_spamd, spamd_inet()])
    assert out.returncode == 2
    got = answers(out.stdout)
    assert got["virus", clamd["unix"]] == "PONG, reports its limits"
    assert got["spam", spamd_inet()] == "PONG"
    assert got["virus", dead_clamd].startswith("FAILED: ")
    assert "Connection refused" in got["virus", dead_clamd]
    assert got["spam", dead_spamd] == f"FAILED: spamd PING failed: {dead_spamd}: Connection refused"
    assert "2 of 4 addresses did not answer" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_clamd_that_answers_ok_past_its_limits_fails_the_check(
    tmp_path: Path, clamd: dict[str, str], silent_clamd: dict[str, str]
) -> None:
    require_daemon("spamd")
    out = check(tmp_path, [clamd["unix"], silent_clamd["inet"]], [spamd_inet()])
    assert out.returncode == 2
    got = answers(out.stdout)
    assert got["virus", clamd["unix"]] == "PONG, reports its limits"
    problem = got["virus", silent_clamd["inet"]]
    assert problem.startswith(f"FAILED: clamd at {silent_clamd['inet']} answered OK for a file")
    assert "Set 'AlertExceedsMax yes'" in problem
    assert "1 of 3 addresses did not answer or failed a check" in out.stderr
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
