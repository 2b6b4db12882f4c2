"""`mxscan smtp` / `mxscan lmtp` as processes: one-line errors, ready, SIGHUP, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from smtp_proc import FilterProcess

from tests.support.postfix import free_port

CLEAN = """
[scanner.tag]
plugin = "header-rules"
rules = "/^Subject:/ PREPEND X-Seen: yes"

[[stage]]
run = ["tag"]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args], capture_output=True, text=True, timeout=60
    )


def test_a_non_loopback_listener_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CLEAN)
    done = run(
        "smtp",
        "-c",
        str(tmp_path / "c.toml"),
        "-l",
        "inet:192.0.2.1:10024",
        "--next",
        "inet:127.0.0.1:1",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a loopback address" in done.stderr


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[scanner.x]\nplugin = 'nonesuch'\n")
    done = run(
        "lmtp",
        "-c",
        str(tmp_path / "c.toml"),
        "--next",
        "inet:127.0.0.1:1",
        "-l",
        f"inet:127.0.0.1:{free_port()}",
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("mxscan: error: ")


def test_next_is_required_and_help_explains() -> None:
    done = run("smtp")
    assert done.returncode == 2 and "--next" in done.stderr
    text = run("lmtp", "--help").stdout
    assert "one reply per recipient" in text.lower() and "--max-size" in text
    # What is passed on, and the duplicate window, as docs/smtp.md says.
    assert all(word in text for word in ("NOTIFY=", "ORCPT=", "dsn=dropped", "twice"))


def test_ready_reload_and_sigterm(tmp_path: Path) -> None:
    proc = FilterProcess("smtp", CLEAN, tmp_path / "f", free_port(), free_port()).start()
    try:
        proc.config_path.write_text("not toml [")
        proc.signal(signal.SIGHUP)
        proc.wait_for("reload failed, keeping the old configuration")
        proc.config_path.write_text(CLEAN)
        proc.signal(signal.SIGHUP)
        proc.wait_for("configuration reloaded")
    finally:
        assert proc.stop() == 0
