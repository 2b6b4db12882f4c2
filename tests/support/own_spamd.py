"""A spamd of a test's own, for SpamAssassin settings the shared one lacks.

The shared spamd (scripts/daemons) is used by every helper and must never be
restarted or reconfigured. A test that needs other settings - ``report_safe 0``
so that spamd writes ``X-Spam-Report``, or an explicit ``trusted_networks`` -
starts its own instance here: the shared site configuration (the offline
settings scripts/daemons wrote) plus the test's lines, on a free loopback port,
stopped (by its own pid) when the test session ends.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemons import run_dir, spamd_alive

__all__ = ["OwnSpamd", "own_spamd"]

SPAMD_USER = os.environ.get("MXSCAN_SPAMD_USER", "debian-spamd")
START_TIMEOUT = 120.0  # rule compilation on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class OwnSpamd:
    address: str  # inet:127.0.0.1:PORT
    pid: int  # the parent; its children are the ones with this parent pid


@contextmanager
def own_spamd(config: str, *, max_children: int = 1) -> Iterator[OwnSpamd]:
    """Start a spamd with the shared site config plus ``config``. Raises
    RuntimeError (with spamd's log) if it cannot start."""
    site = run_dir() / "spamassassin"
    if not site.is_dir() or shutil.which("spamd") is None:
        raise RuntimeError(f"no spamd or no {site}: run bash scripts/daemons start spamd")
    work = Path(tempfile.mkdtemp(prefix="mxscan-own-spamd-"))
    os.chmod(work, 0o755)
    conf = work / "site"
    shutil.copytree(site, conf)
    (conf / "zz-test.cf").write_text(config)
    home, log = work / "home", work / "spamd.log"
    home.mkdir()
    log.touch()
    user: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SPAMD_USER)
        for path in (home, log):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        user = ["-u", SPAMD_USER]
    for path in conf.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    conf.chmod(0o755)
    port = _free_port()
    address = f"inet:127.0.0.1:{port}"
    command = [
        "spamd", "-L", "-x", "-i", f"127.0.0.1:{port}", "-A", "127.0.0.1", *user,
        "-H", str(home), "--configpath=/usr/share/spamassassin",
        f"--siteconfigpath={conf}", f"--max-children={max_children}", "--min-children=1",
        "-s", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not spamd_alive(address, timeout=5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"own spamd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield OwnSpamd(address, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # spamd's children are in its session; the parent ends them on SIGTERM.
        shutil.rmtree(work, ignore_errors=True)
