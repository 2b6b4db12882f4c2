"""contrib/: the systemd unit passes systemd-analyze, and the FreeBSD rc.d script
starts, reloads and stops a real ``mxscan milter`` (under a stand-in rc.subr and
daemon(8), since this is Linux)."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mta
from tests.support.child import child_env, module_argv
from tests.support.milter import RULES
from tests.support.service_install import service_mxscan
from tests.support.tools import require

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "mxscan-milter.service"
RC_SCRIPT = REPO / "contrib" / "freebsd" / "mxscan"
HERE = Path(__file__).parent
MXSCAN = Path(sys.executable).parent / "mxscan"


def unit_for_this_machine(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as shipped, with ExecStart's program pointed at this venv's mxscan
    (verify checks that the program exists and is executable)."""
    text = UNIT.read_text() if text is None else text
    assert "/usr/bin/mxscan milter" in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/usr/bin/mxscan", str(MXSCAN)))
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    done = verify(unit_for_this_machine(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys and bad values only warn


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a bad value are reported."""
    broken = UNIT.read_text().replace(
        "ProtectSystem=strict", "ProtectSystem=bogus\nProtectSytem=yes"
    )
    done = verify(unit_for_this_machine(tmp_path, broken))
    assert "ProtectSytem" in done.stderr and "bogus" in done.stderr


def test_systemd_unit_promises(tmp_path: Path) -> None:
    """What docs/operations.md says about the unit, read from the unit itself."""
    text = UNIT.read_text()
    for line in (
        "ReadWritePaths=/var/spool/postfix/mxscan",
        "ExecStartPre=+/usr/bin/install -d -o mxscan -g postfix -m 0750 /var/spool/postfix/mxscan",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SupplementaryGroups=postfix",
        "User=mxscan",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        assert re.search(rf"(?m)^{re.escape(line)}$", text), line
    # Inside Postfix's chroot: Debian's chrooted smtpd reaches it as unix:/mxscan/milter.sock.
    assert "--socket-group postfix" in text
    assert "--listen unix:/var/spool/postfix/mxscan/milter.sock" in text


def test_systemd_unit_exposure_score(tmp_path: Path) -> None:
    """systemd's own hardening score for the unit (0 = locked down, 10 = exposed)."""
    done = subprocess.run(
        [
            require("systemd-analyze"),
            "security",
            "--offline=yes",
            str(unit_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found[1]) <= 2.0, done.stdout


def test_rc_script_is_posix_sh() -> None:
    done = subprocess.run(["sh", "-n", str(RC_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(RC_SCRIPT, os.X_OK)


def test_rc_script_shellcheck() -> None:
    """shellcheck catches what sh -n does not (scripts/install-system-deps installs it,
    so under MXSCAN_REQUIRE_DAEMONS=1 its absence fails rather than skips)."""
    shellcheck = require("shellcheck")
    done = subprocess.run(
        [shellcheck, "-s", "sh", str(RC_SCRIPT), str(HERE / "rc_subr_stub.sh")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


class RcScript:
    def __init__(self, base: Path, **rc_conf: str) -> None:
        self.base = base
        self.log = base / "daemon.log"
        self.script = base / "mxscan"
        text = RC_SCRIPT.read_text()
        for old, new in (
            (". /etc/rc.subr", f". {HERE / 'rc_subr_stub.sh'}"),
            ("/var/run/", f"{base}/"),
        ):
            assert old in text, old
            text = text.replace(old, new)
        self.script.write_text(text)
        self.env = {
            **child_env(),
            "STUB_DAEMON": " ".join(module_argv("fake_daemon")),
            "STUB_LOG": str(self.log),
            **rc_conf,
        }

    def __call__(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(self.script), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def rc_base() -> Iterator[Path]:
    """A directory the unprivileged mxscan can still reach after --user (pytest's
    tmp_path is 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="mxscan-rc-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


async def send(path: Path, subject: str) -> bytes:
    client = await mta.MtaClient.open_unix(str(path))
    try:
        await client.handshake()
        await client.send(mta.mail("s@example.org"), mta.rcpt("r@example.net"))
        await client.read()
        await client.send(*mta.message_packets(f"Subject: {subject}\r\n\r\nx\r\n".encode()))
        return (await client.read_until_final())[-1][0]
    finally:
        await client.close()


def wait_for(predicate: object, what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except FileNotFoundError:  # the daemon has not created its log yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}; log:\n{log.read_text() if log.exists() else ''}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the rc script chowns the socket (root only)")
def test_rc_script_start_reload_stop(rc_base: Path) -> None:
    config = rc_base / "mxscan.toml"
    config.write_text(RULES)
    config.chmod(0o644)
    sock = rc_base / "run" / "milter.sock"
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    rc = RcScript(
        rc_base,
        mxscan_enable="YES",
        mxscan_program=service_mxscan("nobody"),  # an install nobody can read
        mxscan_config=str(config),
        mxscan_socket=str(sock),
        mxscan_socket_owner="nobody",
        mxscan_socket_group=group,
        mxscan_user="nobody",
        mxscan_flags="--drain-timeout 5s",
    )
    assert rc("configtest").returncode == 0
    started = rc("start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        wait_for(lambda: "ready (pid " in rc.log.read_text(), "mxscan never got ready", rc.log)
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name) == (
            "nobody",
            group,
        )
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o750
        child = int((rc_base / "mxscan.child.pid").read_text())
        assert pwd.getpwuid(os.stat(f"/proc/{child}").st_uid).pw_name == "nobody"  # dropped
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        assert argv[-3:] == [b"--drain-timeout", b"5s", b""], argv  # mxscan_flags: mxscan's
        assert asyncio.run(send(sock, "discard-me")) == b"d"

        reloaded = rc("reload")
        assert reloaded.returncode == 0, reloaded.stdout
        wait_for(lambda: "configuration reloaded" in rc.log.read_text(), "no reload", rc.log)
    finally:
        stopped = rc("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not sock.exists()  # mxscan removed its socket at SIGTERM
    assert not Path(f"/proc/{child}").exists()
    assert "Traceback" not in rc.log.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="the rc script chowns the socket (root only)")
def test_rc_script_removes_a_socket_a_crash_left(rc_base: Path) -> None:
    sock = rc_base / "run" / "milter.sock"
    sock.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # a socket file nobody listens on, as after kill -9
    (rc_base / "mxscan.pid").write_text(f"{os.getpid() + 10_000_000}\n")  # no such process
    rc = RcScript(rc_base, mxscan_enable="YES", mxscan_socket=str(sock))
    rc("stop")
    assert not sock.exists()


def test_rc_script_does_nothing_unless_enabled(rc_base: Path) -> None:
    rc = RcScript(rc_base, mxscan_config="/nonexistent")
    done = rc("start")
    assert "Set mxscan_enable to YES" in done.stdout
    assert not rc.log.exists()
