"""Where the private test daemons are, how tests decide to skip or fail, test messages.

Tests against real daemons may skip only when the daemon is absent *and*
MXSCAN_REQUIRE_DAEMONS is not "1" (CI sets it, so a missing daemon fails there
instead of silently passing). Addresses come from env vars first, then from the
env file that ``scripts/daemons start`` writes, then from the defaults, so a run
with non-default ports still finds its daemons.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import zipfile
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Literal

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = "/tmp/mxscan-run"
DEFAULT_CLAMD_INET = "inet:127.0.0.1:13310"
DEFAULT_SPAMD_INET = "inet:127.0.0.1:10783"
DEFAULT_RSPAMD_INET = "inet:127.0.0.1:11433"
DEFAULT_RSPAMD_CONTROLLER = "inet:127.0.0.1:11434"

DaemonKind = Literal["clamd", "clamd-inet", "spamd", "rspamd", "postfix", "miltertest"]

# The GTUBE string may appear in files (only EICAR may not).
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Name clamd reports for EICAR with scripts/clamav-db (custom signatures get
# ".UNOFFICIAL" appended by ClamAV).
EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"


# ---------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Address:
    """A daemon address as written in the env vars: ``unix:/path`` or ``inet:host:port``."""

    kind: Literal["unix", "inet"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"inet:{self.host}:{self.port}"


def parse_address(spec: str) -> Address:
    """Parse ``unix:/path`` or ``inet:host:port``; raise ValueError with the bad text."""
    if spec.startswith("unix:") and len(spec) > len("unix:"):
        return Address("unix", path=spec[len("unix:") :])
    if spec.startswith("inet:"):
        host, sep, port = spec[len("inet:") :].rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return Address("inet", host=host.strip("[]"), port=int(port))
    raise ValueError(f"bad daemon address {spec!r}: expected unix:/path or inet:host:port")


def run_dir() -> Path:
    return Path(os.environ.get("MXSCAN_RUN_DIR", DEFAULT_RUN_DIR))


def _env_file_values() -> dict[str, str]:
    """Values from $MXSCAN_RUN_DIR/env, so tests follow whatever ports the script used."""
    path = run_dir() / "env"
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("MXSCAN_"):
            values[key.strip()] = value.strip()
    return values


def _setting(name: str, default: str) -> str:
    if name in os.environ:
        return os.environ[name]
    return _env_file_values().get(name, default)


def clamd_unix() -> str:
    return _setting("MXSCAN_CLAMD_UNIX", f"unix:{run_dir() / 'clamd.sock'}")


def clamd_inet() -> str:
    return _setting("MXSCAN_CLAMD_INET", DEFAULT_CLAMD_INET)


def spamd_inet() -> str:
    return _setting("MXSCAN_SPAMD_INET", DEFAULT_SPAMD_INET)


def rspamd_inet() -> str:
    """rspamd's normal worker (``/checkv2``)."""
    return _setting("MXSCAN_RSPAMD_INET", DEFAULT_RSPAMD_INET)


def rspamd_controller() -> str:
    return _setting("MXSCAN_RSPAMD_CONTROLLER", DEFAULT_RSPAMD_CONTROLLER)


def rspamd_password() -> str:
    return _setting("MXSCAN_RSPAMD_PASSWORD", "mxscan-test")


def clamd_stream_max_bytes() -> int:
    """clamd's StreamMaxLength as configured by scripts/daemons (default 30M)."""
    return int(_setting("MXSCAN_CLAMD_STREAM_MAX_BYTES", str(30 * 1024 * 1024)))


def daemons_required() -> bool:
    return os.environ.get("MXSCAN_REQUIRE_DAEMONS", "") == "1"


# ---------------------------------------------------------------- liveness


def _connect(addr: Address, timeout: float) -> socket.socket:
    if addr.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr.path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((addr.host, addr.port), timeout=timeout)


def _exchange(addr: Address, request: bytes, timeout: float) -> bytes:
    with _connect(addr, timeout) as sock:
        sock.sendall(request)
        if addr.kind == "inet":
            sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            if request.startswith(b"z") and chunk.endswith(b"\0"):
                break
        return b"".join(chunks)


def clamd_alive(address: str | None = None, timeout: float = 10.0) -> bool:
    """True if clamd answers zPING with PONG at the address (default: the unix socket).

    The timeout is generous: an absent clamd is refused at once, but a present one
    may queue the PING behind scans a previous test left running (MaxThreads 4),
    and under MXSCAN_REQUIRE_DAEMONS=1 a slow PONG would fail the test."""
    try:
        reply = _exchange(parse_address(address or clamd_unix()), b"zPING\0", timeout)
    except (OSError, ValueError):
        return False
    return reply.rstrip(b"\0\n") == b"PONG"


def spamd_alive(address: str | None = None, timeout: float = 15.0) -> bool:
    """True if spamd answers a SPAMC PING with ``SPAMD/x.y 0 PONG`` (generous timeout:
    the PING may wait for a free child, see clamd_alive)."""
    try:
        reply = _exchange(
            parse_address(address or spamd_inet()), b"PING SPAMC/1.5\r\n\r\n", timeout
        )
    except (OSError, ValueError):
        return False
    return reply.startswith(b"SPAMD/") and b" PONG" in reply.split(b"\r\n", 1)[0]


def rspamd_alive(address: str | None = None, timeout: float = 10.0) -> bool:
    """True if rspamd's worker at the address answers ``GET /ping`` with ``pong``."""
    try:
        reply = _exchange(
            parse_address(address or rspamd_inet()), b"GET /ping HTTP/1.0\r\n\r\n", timeout
        )
    except (OSError, ValueError):
        return False
    return reply.startswith(b"HTTP/1.") and reply.rstrip().endswith(b"pong")


def _absent_reason(kind: DaemonKind) -> str | None:
    hint = "run `bash scripts/daemons start` (after scripts/install-system-deps)"
    if kind == "clamd":
        if not clamd_alive():
            return f"clamd not answering on {clamd_unix()}; {hint}"
    elif kind == "clamd-inet":
        if not clamd_alive(clamd_inet()):
            return f"clamd not answering on {clamd_inet()}; {hint}"
    elif kind == "spamd":
        if not spamd_alive():
            return f"spamd not answering on {spamd_inet()}; {hint}"
    elif kind == "rspamd":
        if not rspamd_alive():
            return (
                f"rspamd not answering on {rspamd_inet()}; run `bash scripts/daemons start rspamd`"
            )
    elif kind == "postfix":
        if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
            return "postfix is not installed; run scripts/install-system-deps"
        if os.geteuid() != 0:
            return "a private Postfix instance needs root (master runs as root)"
    elif kind == "miltertest":
        if shutil.which("miltertest") is None:
            return "miltertest is not installed; run scripts/install-system-deps"
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown daemon kind {kind!r}")
    return None


def require_daemon(kind: DaemonKind) -> None:
    """Skip the calling test if the daemon is absent, or fail when daemons are required."""
    reason = _absent_reason(kind)
    if reason is None:
        return
    if daemons_required():
        pytest.fail(f"MXSCAN_REQUIRE_DAEMONS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- corpus


def corpus_dir(*parts: str) -> Path:
    """The shared test corpus (or a path inside it); skip the test if it is absent."""
    base = Path(os.environ.get("MXSCAN_CORPUS", str(REPO_ROOT.parent / "shared" / "corpus")))
    path = base.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"corpus path {path} is absent (set MXSCAN_CORPUS)")
    return path


# ---------------------------------------------------------------- test messages


def eicar_bytes() -> bytes:
    """The 68-byte EICAR test file, joined at run time so no repo file contains it."""
    first = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
    second = b"EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*"
    return first + second


def _headers(subject: str, sender: str, recipient: str, msgid: str) -> bytes:
    # A current Date avoids SpamAssassin's DATE_IN_PAST_* rules shifting scores.
    return (
        f"From: {sender}\r\n"
        f"To: {recipient}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <{msgid}@mxscan.test>\r\n"
    ).encode("ascii")


def gtube_message(
    *, sender: str = "sender@example.org", recipient: str = "rcpt@example.com"
) -> bytes:
    """A plain-text message whose body holds GTUBE (spamd scores it 1000)."""
    return (
        _headers("GTUBE test", sender, recipient, "gtube")
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + b"This is the GTUBE, the Generic Test for Unsolicited Bulk Email.\r\n\r\n"
        + GTUBE
        + b"\r\n"
    )


def ham_message(*, sender: str = "alice@example.org", recipient: str = "bob@example.com") -> bytes:
    """An ordinary short message that spamd scores well below the threshold."""
    return (
        _headers("Lunch tomorrow", sender, recipient, "ham")
        + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + b"Hi Bob,\r\n\r\nShall we meet for lunch at noon tomorrow, as usual?\r\n\r\n"
        + b"Alice\r\n"
    )


def _b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _multipart(subject: str, part_headers: bytes, part_body: bytes) -> bytes:
    boundary = b"mxscan-test-boundary"
    return (
        _headers(subject, "sender@example.org", "rcpt@example.com", subject.replace(" ", "-"))
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="'
        + boundary
        + b'"\r\n\r\n--'
        + boundary
        + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n--"
        + boundary
        + b"\r\n"
        + part_headers
        + b"\r\n"
        + part_body
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )


def eicar_message(wrapping: Literal["base64", "zip", "nested"] = "base64") -> bytes:
    """A MIME message carrying EICAR: as a base64 attachment, zipped, or in a message/rfc822."""
    if wrapping == "base64":
        return _multipart(
            "eicar attachment",
            b'Content-Type: application/octet-stream; name="eicar.com"\r\n'
            b"Content-Transfer-Encoding: base64\r\n",
            _b64_lines(eicar_bytes()),
        )
    if wrapping == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("eicar.com", eicar_bytes())
        return _multipart(
            "eicar zip",
            b'Content-Type: application/zip; name="eicar.zip"\r\n'
            b"Content-Transfer-Encoding: base64\r\n",
            _b64_lines(buf.getvalue()),
        )
    if wrapping == "nested":
        return _multipart("eicar nested", b"Content-Type: message/rfc822\r\n", eicar_message())
    raise ValueError(f"unknown wrapping {wrapping!r}")


def clean_attachment_message() -> bytes:
    """Same shape as eicar_message() but harmless: a negative control for clamd tests."""
    return _multipart(
        "clean attachment",
        b'Content-Type: application/octet-stream; name="notes.txt"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        _b64_lines(b"nothing to see here\n"),
    )
