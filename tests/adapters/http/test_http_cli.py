"""``mxscan http`` as a process: refusals, the ready line, SIGHUP, SIGTERM, sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.support.httpd import HttpProcess

RULES = """
[scanner.rules]
plugin = "header-rules"
rules = "/^Subject: .*{word}/ REJECT 5.7.1 no {word} here"
"""
MAIL = b"From: a@example.org\r\nSubject: free money\r\n\r\nhi\r\n"


def _mxscan(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _post(port: int, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(
            f"POST /checkv2 HTTP/1.0\r\nContent-Length: {len(data)}\r\n{extra}\r\n".encode() + data
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _config(tmp_path: Path, word: str = "money") -> Path:
    path = tmp_path / "mxscan.toml"
    path.write_text(RULES.format(word=word))
    return path


def test_non_loopback_needs_allow_remote(tmp_path: Path) -> None:
    done = _mxscan("http", "-c", str(_config(tmp_path)), "-l", "inet:0.0.0.0:11333")
    assert done.returncode == 2
    assert done.stderr == (
        "mxscan: error: inet:0.0.0.0:11333 is not a loopback address: "
        "add --allow-remote to serve it\n"
    )


def test_allow_remote_needs_a_password(tmp_path: Path) -> None:
    done = _mxscan(
        "http", "-c", str(_config(tmp_path)), "-l", "inet:192.0.2.1:11333", "--allow-remote"
    )
    assert done.returncode == 2
    assert "a non-loopback address needs --password-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[scanner.x]\nplugin = 'nosuchplugin'\n")
    done = _mxscan("http", "-c", str(bad), "-l", "inet:127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.startswith("mxscan: error: ")
    assert done.stderr.count("\n") == 1


def test_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    done = _mxscan("http", "-c", str(_config(tmp_path)), "--password-file", str(empty))
    assert (done.returncode, "is empty" in done.stderr) == (2, True)


def test_password_file_is_enforced(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    proc = HttpProcess(RULES.format(word="money"), tmp_path, args=["--password-file", str(pw)])
    try:
        assert _post(proc.port, MAIL)[0] == 401
        assert _post(proc.port, MAIL, {"Password": "s3cre"})[0] == 401
        status, answer = _post(proc.port, MAIL, {"Password": "s3cret"})
        assert (status, answer["action"]) == (200, "reject")
        assert answer["messages"]["smtp_message"] == "5.7.1 no money here"
    finally:
        proc.stop()


def test_ready_reload_and_drain(tmp_path: Path) -> None:
    proc = HttpProcess(RULES.format(word="money"), tmp_path)
    try:
        line = proc.wait_for("ready (pid ")
        assert f"ready (pid {proc.proc.pid})" in line
        assert _post(proc.port, MAIL)[1]["action"] == "reject"

        proc.config_path.write_text("[scanner.rules]\nplugin = \n")  # broken
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("reload failed, keeping the old configuration")
        assert _post(proc.port, MAIL)[1]["action"] == "reject"

        proc.config_path.write_text(RULES.format(word="lottery"))
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for(f"configuration reloaded from {proc.config_path}")
        assert _post(proc.port, MAIL)[1]["action"] == "no action"
        assert _post(proc.port, b"Subject: lottery\r\n\r\n")[1]["action"] == "reject"
    finally:
        assert proc.stop() == 0
    assert "stopping: draining scans in flight" in proc.log()


def test_unix_socket_mode_and_removal(tmp_path: Path) -> None:
    sock_path = tmp_path / "http.sock"
    config = _config(tmp_path)
    p = subprocess.Popen(
        [sys.executable, "-m", "mxscan", "http", "-c", str(config), "-l", f"unix:{sock_path}",
         "--socket-mode", "0600"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stderr is not None
        for line in p.stderr:
            if "ready (pid" in line:
                break
        st = os.lstat(sock_path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock_path))
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            time.sleep(0.2)
            assert s.recv(4096).endswith(b"pong\r\n")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    assert not sock_path.exists()


def test_help_lists_the_safety_options() -> None:
    done = _mxscan("http", "--help")
    assert done.returncode == 0
    for option in ("--allow-remote", "--password-file", "--max-size", "--max-connections"):
        assert option in done.stdout
