"""`mxscan smtp` / `mxscan lmtp` as processes: one-line errors, ready, SIGHUP, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.postfix import free_port
from tests.support.smtp import FilterProcess

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


def test_metrics_count_scans_and_reloads(tmp_path: Path) -> None:
    """``--metrics`` as the milter has it: the endpoint is up by ``ready``, a
    scanned message and a failed reload are counted. The next hop is down, so
    the message is scanned and then answered 451 (Postfix keeps it)."""
    import smtplib
    import urllib.request

    metrics_port = free_port()
    proc = FilterProcess(
        "smtp", CLEAN, tmp_path / "f", free_port(), free_port(),
        args=["--metrics", f"inet:127.0.0.1:{metrics_port}"],
    ).start()  # fmt: skip
    try:
        with smtplib.SMTP("127.0.0.1", proc.port, local_hostname="localhost", timeout=30) as s:
            s.ehlo()
            assert s.mail("a@example.org")[0] == 250
            assert s.rcpt("b@example.net")[0] == 250
            code, _ = s.data(b"Subject: hi\r\n\r\nbody\r\n")
        assert code == 451
        proc.config_path.write_text("not toml [")
        proc.signal(signal.SIGHUP)
        proc.wait_for("reload failed, keeping the old configuration")
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            page = answer.read().decode()
    finally:
        assert proc.stop() == 0
    assert 'mxscan_messages_total{action="accept"} 1.0' in page
    assert 'mxscan_config_reloads_total{result="failure"} 1.0' in page
