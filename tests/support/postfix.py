"""A private, throw-away Postfix instance for tests, listening on 127.0.0.1 only.

Why this shape: Postfix is the MTA mxscan sits behind, so adapter tests run the
real thing. Each instance has its own config, queue and data directories and
its own ports, so several can run in one session; all outbound mail goes to an
SMTP sink on loopback (a ``*`` transport entry catches every domain). The
pitfalls encoded here (chroot off, postlogd instead of syslog, data_directory
owned by postfix, dynamicmaps via meta_directory) are commented where they are set.
"""

from __future__ import annotations

import atexit
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemons import run_dir

POSTFIX_USER = "postfix"
DEFAULT_RELAY_DOMAINS = ("example.com", "example.net", "example.jp")

_live_instances: set[PostfixInstance] = set()


def process_alive(pid: int) -> bool:
    """True if pid is a live process. A zombie counts as gone: a daemonised master's
    parent is pid 1, which may reap it only a second or so after it exited."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _run_with_tty(args: list[str], timeout: float) -> tuple[str, int]:
    """Run a Postfix command with a pty as stdout/stderr and return (output, exit code).

    Why a pty: Postfix commands print their messages to stderr only when it is a
    terminal; otherwise they go to syslog, which does not exist here (errors found
    while parsing main.cf happen before maillog_file is in effect). Daemonised
    children may keep the pty open, so reading stops once the command has exited
    and no more output is pending.
    """
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True
        )
    except OSError as exc:
        os.close(master)
        os.close(slave)
        raise PostfixError(f"cannot run {args[0]}: {exc}") from exc
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the pty
                    data = b""
                if data:
                    chunks.append(data)
                    continue
                break
            if proc.poll() is not None:
                break  # exited, nothing pending (a daemon child may hold the pty)
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise PostfixError(f"`{' '.join(args)}` did not finish within {timeout:g} s")
    finally:
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return text.strip(), proc.wait()


class PostfixError(RuntimeError):
    """A Postfix command failed; the message carries its output and the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks; tiny race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class QueuedMessage:
    """One entry of ``postqueue -j``."""

    queue_id: str
    queue_name: str  # incoming, active, deferred, hold, maildrop
    sender: str
    recipients: tuple[str, ...]
    reasons: tuple[str, ...]  # delay reasons, one per recipient that has one
    raw: Mapping[str, object] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """The server's final reply to DATA (and the queue id parsed from it, if any)."""

    code: int
    text: str
    queue_id: str | None


_MASTER_SERVICES = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{smtpd_listen} inet n - n - - smtpd
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixInstance:
    """A private Postfix: ``start()``, send with ``send()``, inspect, ``stop()``.

    ``base_dir`` must be reachable by the ``postfix`` user (pytest's tmp_path is
    not: /tmp/pytest-of-root is 0700); by default a fresh directory under
    ``$MXSCAN_RUN_DIR/postfix`` is used. ``main_overrides`` replace or add
    main.cf settings; ``master_extra`` lines are appended to master.cf (chroot
    must be ``n`` in them too). ``add_smtpd_listener()`` adds another smtpd on
    its own port with ``-o`` overrides (e.g. a milter) before ``start()``.
    """

    _queue_layout: list[tuple[str, int, int, int]] | None = None

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        relay_port: int,
        relay_host: str = "127.0.0.1",
        main_overrides: Mapping[str, str] | None = None,
        master_extra: Sequence[str] = (),
        relay_domains: Iterable[str] = DEFAULT_RELAY_DOMAINS,
        smtp_port: int | None = None,
    ) -> None:
        if base_dir is None:
            parent = run_dir() / "postfix"
            parent.mkdir(parents=True, exist_ok=True)
            parent.chmod(0o755)
            run_dir().chmod(run_dir().stat().st_mode | 0o005)
            base_dir = tempfile.mkdtemp(prefix="pf-", dir=parent)
            self._owns_dir = True
        else:
            self._owns_dir = False
        self.dir = Path(base_dir).resolve()
        self.relay_host = relay_host
        self.relay_port = relay_port
        self.relay_domains = tuple(relay_domains)
        self.smtp_port = smtp_port or free_port()
        self.main_overrides = dict(main_overrides or {})
        self.master_extra = list(master_extra)
        self.listeners: dict[int, dict[str, str]] = {}
        self._started = False

    # -- paths

    @property
    def config_dir(self) -> Path:
        """main.cf/master.cf live here, apart from the queue: postfix-script's ownership
        checks walk the whole config directory and would flag (and slowly crawl) a queue
        inside it."""
        return self.dir / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.dir / "queue"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "postfix.log"

    # -- configuration

    def add_smtpd_listener(self, overrides: Mapping[str, str], port: int | None = None) -> int:
        """Another smtpd on 127.0.0.1:port with ``-o name=value`` overrides; returns the port."""
        if self._started:
            raise PostfixError("add listeners before start(): master.cf is written then")
        port = port or free_port()
        self.listeners[port] = dict(overrides)
        return port

    def main_cf(self) -> dict[str, str]:
        d = str(self.dir)
        conf = str(self.config_dir)
        settings = {
            "compatibility_level": "3.6",
            "config_directory": conf,
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "meta_directory": "/etc/postfix",
            "mail_owner": POSTFIX_USER,
            "myhostname": "mx.mxscan.test",
            "mydomain": "mxscan.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "relay_domains": " ".join(self.relay_domains),
            "transport_maps": f"texthash:{conf}/transport",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": d,
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "message_size_limit": str(60 * 1024 * 1024),
            "smtpd_banner": "$myhostname ESMTP mxscan-test",
        }
        settings.update(self.main_overrides)
        return settings

    def master_cf(self) -> str:
        text = _MASTER_SERVICES.format(smtpd_listen=f"127.0.0.1:{self.smtp_port}")
        for port, overrides in self.listeners.items():
            text += f"127.0.0.1:{port} inet n - n - - smtpd\n"
            for name, value in overrides.items():
                text += f"  -o {name}={value}\n"
        for line in self.master_extra:
            text += line.rstrip("\n") + "\n"
        return text

    def write_config(self) -> None:
        postfix_pw = pwd.getpwnam(POSTFIX_USER)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.config_dir.mkdir(exist_ok=True)
        self.config_dir.chmod(0o755)
        self.queue_dir.mkdir(exist_ok=True)
        self.queue_dir.chmod(0o755)
        self.data_dir.mkdir(exist_ok=True)
        os.chown(self.data_dir, postfix_pw.pw_uid, postfix_pw.pw_gid)
        self.data_dir.chmod(0o700)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        target = f"smtp:[{self.relay_host}]:{self.relay_port}"
        (self.config_dir / "transport").write_text(f"* {target}\n")
        # Postfix re-reads a config file until its mtime is over a second old (a guard
        # against half-written files), costing ~2 s per start; backdate them.
        past = time.time() - 10
        for name in ("main.cf", "master.cf", "transport"):
            os.utime(self.config_dir / name, (past, past))
        self.log_path.touch()

    # -- commands

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        output, returncode = _run_with_tty(list(args), timeout)
        if check and returncode != 0:
            raise PostfixError(
                f"`{' '.join(args)}` exited {returncode} for {self.dir}:\n{output}\n"
                f"--- log tail ---\n{self.log_tail()}"
            )
        return output

    def check(self) -> str:
        """``postfix check``: catches permission and config mistakes before start."""
        return self._run("postfix", "-c", str(self.config_dir), "check")

    def start(self, timeout: float = 30, *, check: bool | None = None) -> PostfixInstance:
        """Write the config, check it, start master, wait for every smtpd's 220 banner.

        The full checks (``postfix check`` and the integrity checks ``postfix start``
        runs, which also create the queue directories) take several seconds, and every
        instance is built the same way. So by default only the first instance of the
        process gets them; later ones copy its queue directory layout and use
        Postfix's ``quick-start`` marker. ``check=True`` forces the full checks.
        Main.cf errors are reported either way (the ``postfix`` command parses it).
        """
        if self._started:
            return self
        if os.geteuid() != 0:
            raise PostfixError("a private Postfix instance needs root (master runs as root)")
        if shutil.which("postfix") is None:
            raise PostfixError("postfix is not installed: run scripts/install-system-deps")
        self.write_config()
        self._check_reachable()
        layout = PostfixInstance._queue_layout
        full_check = bool(check) or (check is None and layout is None)
        if full_check:
            warnings = self.check()
            if "fatal:" in warnings:
                raise PostfixError(f"postfix check for {self.dir} reported:\n{warnings}")
        elif layout is not None:
            self._copy_queue_layout(layout)
        _live_instances.add(self)
        self._started = True
        try:
            try:
                self._run("postfix", "-c", str(self.config_dir), "start")
            except PostfixError as exc:
                raise PostfixError(
                    f"{exc}\nhint: master exits without logging anything when a master.cf "
                    f"line is wrong; check master_extra / add_smtpd_listener() overrides in "
                    f"{self.config_dir / 'master.cf'}"
                ) from None
            for port in [self.smtp_port, *self.listeners]:
                self._wait_banner(port, timeout)
        except BaseException:
            self.stop()
            raise
        if layout is None:
            PostfixInstance._queue_layout = self._read_queue_layout()
        return self

    def _read_queue_layout(self) -> list[tuple[str, int, int, int]]:
        return [
            (entry.name, st.st_mode & 0o7777, st.st_uid, st.st_gid)
            for entry in os.scandir(self.queue_dir)
            if entry.is_dir(follow_symlinks=False)
            for st in [entry.stat(follow_symlinks=False)]
        ]

    def _copy_queue_layout(self, layout: list[tuple[str, int, int, int]]) -> None:
        for name, mode, uid, gid in layout:
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            os.chown(path, uid, gid)
            path.chmod(mode)
        # postfix-script skips its slow integrity checks once when this file exists.
        (self.queue_dir / "quick-start").touch()

    def _check_reachable(self) -> None:
        """Every ancestor of the dir must be searchable by postfix, or daemons die oddly."""
        for parent in [self.dir, *self.dir.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise PostfixError(
                    f"{parent} is not searchable by the postfix user (mode {oct(mode & 0o777)}); "
                    f"put the instance under a world-searchable directory"
                )

    def _wait_banner(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    if sock.recv(512).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise PostfixError(
            f"Postfix smtpd on 127.0.0.1:{port} gave no 220 banner within {timeout:g} s "
            f"({last}); log tail:\n{self.log_tail()}"
        )

    def master_pid(self) -> int | None:
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
            pid = int(text)
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def stop(self, timeout: float = 20) -> None:
        """Stop master and its children; SIGKILL if they linger. Safe to call twice."""
        _live_instances.discard(self)
        if not self._started:
            return
        self._started = False
        pid = self.master_pid()
        if pid is None:
            return
        self._run("postfix", "-c", str(self.config_dir), "stop", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.master_pid() is not None:
            time.sleep(0.1)
        if self.master_pid() is not None:
            self._run("postfix", "-c", str(self.config_dir), "abort", check=False)
            time.sleep(0.5)
            if self.master_pid() is not None:
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Stop, then delete the instance directory if this instance created it."""
        self.stop()
        if self._owns_dir and os.environ.get("MXSCAN_KEEP_POSTFIX") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now."""
        self._run("postqueue", "-c", str(self.config_dir), "-f")

    def queue(self) -> list[QueuedMessage]:
        """The queue as ``postqueue -j`` reports it (empty list when the queue is empty)."""
        out = self._run("postqueue", "-c", str(self.config_dir), "-j")
        entries: list[QueuedMessage] = []
        for line in out.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            item = json.loads(line)
            rcpts = item.get("recipients", [])
            entries.append(
                QueuedMessage(
                    queue_id=str(item.get("queue_id", "")),
                    queue_name=str(item.get("queue_name", "")),
                    sender=str(item.get("sender", "")),
                    recipients=tuple(str(r.get("address", "")) for r in rcpts),
                    reasons=tuple(str(r["delay_reason"]) for r in rcpts if r.get("delay_reason")),
                    raw=item,
                )
            )
        return entries

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 30, count: int = 1) -> list[str]:
        """Wait until ``count`` log lines match the regex; AssertionError with the tail if not."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            hits = [line for line in self.log().splitlines() if rx.search(line)]
            if len(hits) >= count:
                return hits
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{len(hits)} of {count} log line(s) matching {pattern!r} within "
                    f"{timeout:g} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    # -- sending

    def send(
        self,
        message: bytes,
        *,
        sender: str = "sender@example.org",
        recipients: Sequence[str] = ("rcpt@example.com",),
        port: int | None = None,
        timeout: float = 60,
    ) -> SendResult:
        """Submit raw bytes over SMTP (only dot-stuffing is applied); return DATA's reply.

        Raises smtplib.SMTPResponseException if MAIL/RCPT is refused; a refused
        DATA is returned, not raised, so tests can assert on reject/tempfail codes.
        """
        with smtplib.SMTP(
            "127.0.0.1",
            port or self.smtp_port,
            local_hostname="client.mxscan.test",
            timeout=timeout,
        ) as client:
            client.ehlo("client.mxscan.test")
            code, text = client.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sender)
            for rcpt in recipients:
                code, text = client.rcpt(rcpt)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            code, text = client.data(message)
        reply = text.decode("utf-8", "replace")
        match = re.search(r"queued as ([0-9A-Za-z]+)", reply)
        return SendResult(code, reply, match.group(1) if match else None)

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostfixInstance({str(self.dir)!r}, smtp_port={self.smtp_port})"


@atexit.register
def _stop_all() -> None:
    """Last resort: never leave a private master running after the test process ends."""
    for instance in list(_live_instances):
        try:
            instance.stop(timeout=5)
        except Exception:  # best effort at interpreter exit
            pass
