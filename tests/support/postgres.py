"""A PostgreSQL cluster of a test's own, for tests that stop and start it.

The cluster of scripts/daemons is shared and must never be stopped; a test that
takes the server away mid-load runs this one: initdb in a temporary directory,
a free loopback port and a unix socket beside it, trust authentication, owned
by the ``postgres`` user when the tests run as root. ``stop()``/``start()``
(pg_ctl) work on this cluster only; leaving the context removes it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OwnPostgres", "own_postgres", "pg_bin"]

PG_USER = os.environ.get("MXSCAN_POSTGRES_USER", "postgres")


def pg_bin() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name
    )
    return found[-1].parent if found else None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnPostgres:
    def __init__(self, bin_dir: Path, work: Path) -> None:
        self.bin = bin_dir
        self.work = work
        self.data = work / "data"
        self.sock = work / "sock"
        self.log = work / "postgres.log"
        self.port = _free_port()
        self.url = f"postgresql://mxscan@/mxscan?host={self.sock}&port={self.port}"

    def _as_owner(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{what} failed: {proc.stdout}{proc.stderr}{log}")

    def init(self) -> None:
        for path in (self.work, self.sock):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        self.data.mkdir(mode=0o700)
        self.log.touch()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            for path in (self.data, self.sock, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._check(
            self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", "mxscan",
                           "--auth=trust", "-E", "UTF8", "--no-instructions"),
            "initdb",
        )  # fmt: skip
        self.start()
        self._check(
            self._as_owner(str(self.bin / "createdb"), "-h", str(self.sock), "-p",
                           str(self.port), "-U", "mxscan", "mxscan"),
            "createdb",
        )  # fmt: skip

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.sock}")  # fmt: skip
        self._check(
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                           "-w", "-o", options, "start"),
            "pg_ctl start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as if the server crashed (no shutdown checkpoint)."""
        self._check(
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                           "stop"),
            "pg_ctl stop",
        )  # fmt: skip

    def running(self) -> bool:
        return (
            self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "status").returncode == 0
        )


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster, running; raises RuntimeError (with the log) if it cannot start."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server installed: run scripts/install-system-deps")
    work = Path(tempfile.mkdtemp(prefix="mxscan-own-pg-"))
    cluster = OwnPostgres(bin_dir, work)
    try:
        cluster.init()
        yield cluster
    finally:
        if cluster.data.exists() and cluster.running():
            cluster.stop("fast")
        shutil.rmtree(work, ignore_errors=True)
