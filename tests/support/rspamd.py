"""A second private rspamd for tests and benchmarks that must not touch the shared one
(kill it, or run rspamd's own milter), started by the same scripts/daemons.

The shared instance's hyperscan cache is copied in first, so the new one loads
it instead of compiling its rules again (a minute on a loaded machine).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemons import REPO_ROOT, run_dir

__all__ = ["PrivateRspamd", "children", "private_rspamd"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (rspamd's workers of its main process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class PrivateRspamd:
    address: str  #: the normal worker, inet:127.0.0.1:PORT
    run: Path  #: its MXSCAN_RUN_DIR
    milter: str | None  #: rspamd's own milter (proxy worker), when asked for

    @property
    def main_pid(self) -> int:
        return int((self.run / "rspamd.pid").read_text().strip())


@contextmanager
def private_rspamd(*, milter: bool = False, clamd: str | None = None) -> Iterator[PrivateRspamd]:
    """Start one (stopped and removed on exit); ``milter`` adds its proxy worker in
    self-scan mode, ``clamd`` (a unix socket path) its antivirus module."""
    run = Path(tempfile.mkdtemp(prefix="mxscan-rspamd-"))
    run.chmod(0o755)  # rspamd's workers run as _rspamd
    (run / "rspamd" / "db").mkdir(parents=True)
    for cached in (run_dir() / "rspamd" / "db").glob("*.hs*"):
        shutil.copy(cached, run / "rspamd" / "db")
    port, milter_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "MXSCAN_RUN_DIR": str(run),
        "MXSCAN_RSPAMD_PORT": str(port),
        "MXSCAN_RSPAMD_CONTROLLER_PORT": str(_free_port()),
        "MXSCAN_RSPAMD_MILTER_PORT": str(milter_port) if milter else "",
        "MXSCAN_RSPAMD_CLAMD": clamd or "",
    }
    script = str(REPO_ROOT / "scripts" / "daemons")
    try:
        subprocess.run(["bash", script, "start", "rspamd"], env=env, check=True, timeout=300)
        yield PrivateRspamd(
            f"inet:127.0.0.1:{port}", run, f"inet:127.0.0.1:{milter_port}" if milter else None
        )
    finally:
        subprocess.run(["bash", script, "stop", "rspamd"], env=env, check=False, timeout=120)
        shutil.rmtree(run, ignore_errors=True)
