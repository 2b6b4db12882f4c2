"""A private Sendmail 8.17 on loopback, from Debian's packages unpacked by
scripts/install-sendmail (never installed: it conflicts with Postfix).

Its configuration is built with m4 from Sendmail's own cf kit, per instance: an
``INPUT_MAIL_FILTER`` on the given milter socket, every message relayed to an SMTP
sink. Sendmail looks its own host name up before it reads any configuration,
through the C library, and that lookup asks DNS: the daemon runs in a private mount
namespace (``unshare --mount``) where ``/etc/nsswitch.conf`` says ``hosts: files``,
``/etc/hosts`` names this host and ``/etc/resolv.conf`` points at a loopback address
nobody listens on. Nothing changes outside that namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.postfix import SendResult, free_port

ROOT = Path(os.environ.get("MXSCAN_SENDMAIL_ROOT", "/opt/mxscan-sendmail"))
BINARY = ROOT / "usr" / "libexec" / "sendmail" / "sendmail"
CF_KIT = ROOT / "usr" / "share" / "sendmail" / "cf"
HOSTNAME = "mx.sendmail.test"

_MC = """\
divert(-1)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`QUEUE_DIR', `{dir}/mqueue')dnl
define(`MSP_QUEUE_DIR', `{dir}/clientmqueue')dnl
define(`ALIAS_FILE', `')dnl
define(`confPID_FILE', `{dir}/sendmail.pid')dnl
define(`STATUS_FILE', `{dir}/statistics')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe,TrustStickyBit')dnl
define(`confDELIVERY_MODE', `interactive')dnl
define(`SMART_HOST', `relay:[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {relay_port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
INPUT_MAIL_FILTER(`mxscan', `S=local:{milter}, F=T, T=S:10s;R:30s;E:5m')dnl
MAILER(`smtp')dnl
"""

#: Run inside the private mount namespace: hide the host's resolver, then exec.
_WRAPPER = (
    'mount --bind "$1/nsswitch.conf" /etc/nsswitch.conf && '
    'mount --bind "$1/hosts" /etc/hosts && '
    'mount --bind "$1/resolv.conf" /etc/resolv.conf && '
    'shift && exec "$@"'
)


def absent_reason() -> str | None:
    """Why a private Sendmail cannot run here, or None."""
    if not BINARY.exists() or not CF_KIT.is_dir():
        return f"no Sendmail in {ROOT}; run scripts/install-sendmail"
    for tool in ("m4", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; run scripts/install-system-deps"
    if os.geteuid() != 0:
        return "a private Sendmail needs root (a mount namespace, and it runs as root)"
    return None


class SendmailInstance:
    """``start()``, ``send()`` raw bytes over SMTP, ``stop()``."""

    def __init__(self, *, relay_port: int, milter_socket: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mxscan-sendmail-"))
        self.port = free_port()
        self.relay_port = relay_port
        self.milter_socket = milter_socket
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        d = self.dir
        for queue in ("mqueue", "clientmqueue"):
            (d / queue).mkdir(mode=0o700)
        (d / "nsswitch.conf").write_text("hosts: files\n")
        name = socket.gethostname()
        (d / "hosts").write_text(
            f"127.0.0.1 localhost {HOSTNAME} {name}\n::1 localhost6 {HOSTNAME} {name}\n"
        )
        (d / "resolv.conf").write_text("nameserver 127.0.0.9\n")
        mc = d / "mxscan.mc"
        mc.write_text(
            _MC.format(
                hostname=HOSTNAME,
                dir=d,
                relay_port=self.relay_port,
                port=self.port,
                milter=self.milter_socket,
            )
        )
        cf = d / "mxscan.cf"
        with cf.open("wb") as out:
            subprocess.run(
                ["m4", f"-D_CF_DIR_={CF_KIT}/", str(CF_KIT / "m4" / "cf.m4"), str(mc)],
                stdout=out,
                stderr=subprocess.DEVNULL,  # the promiscuous_relay warning
                check=True,
            )
        return cf

    def start(self) -> SendmailInstance:
        cf = self._write_config()
        log = (self.dir / "sendmail.out").open("wb")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--", "sh", "-c", _WRAPPER, "sh", str(self.dir),
             str(BINARY), "-C", str(cf), "-bD"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children too are stopped by stop()
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sendmail exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(3) == b"220":
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sendmail did not answer on port {self.port}: {self.output()}")

    def output(self) -> str:
        path = self.dir / "sendmail.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def send(self, message: bytes, *, timeout: float = 60) -> SendResult:
        """Submit raw bytes; DATA's reply (a refused DATA is returned, not raised)."""
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.mxscan.test",
                          timeout=timeout) as client:  # fmt: skip
            client.ehlo("client.mxscan.test")
            assert client.mail("sender@example.org")[0] == 250
            assert client.rcpt("rcpt@example.com")[0] == 250
            code, text = client.data(message)
        return SendResult(code=code, text=text.decode("utf-8", "replace"), queue_id=None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Its own session (start_new_session): the daemon and the children it
            # forked per connection, nothing else.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
