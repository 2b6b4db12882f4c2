"""A clamd of a test's own, started by scripts/daemons with the settings it needs.

The shared private clamd (/tmp/mxscan-run) serves every test and must not be
restarted; a test that needs other clamd.conf settings (a small
StreamMaxLength, AlertExceedsMax on or off) starts one of these instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import REPO_ROOT, daemons_required

__all__ = ["PREFIX", "private_clamd", "reap_orphans"]

DAEMONS = REPO_ROOT / "scripts" / "daemons"
PREFIX = "/tmp/mxscan-clamd-"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(what: str) -> None:
    if daemons_required():
        pytest.fail(f"{what} (MXSCAN_REQUIRE_DAEMONS=1)")
    pytest.skip(what)


def _stop(run: Path) -> None:
    env = {**os.environ, "MXSCAN_RUN_DIR": str(run)}
    subprocess.run(["bash", str(DAEMONS), "stop", "clamd"], env=env, capture_output=True)
    subprocess.run(["rm", "-rf", str(run)], capture_output=True)


def reap_orphans(prefix: str = PREFIX) -> None:
    """Stop the clamds of earlier test runs killed before their teardown (the
    run directory ends in the dead pytest's pid), so they do not pile up."""
    for run in Path(prefix).parent.glob(Path(prefix).name + "*"):
        owner = run.name.rsplit("-", 1)[-1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _stop(run)


@contextlib.contextmanager
def private_clamd(tag: str, prefix: str = PREFIX, **settings: str) -> Iterator[dict[str, str]]:
    """Start a clamd under /tmp (clamd runs as the clamav user and must reach
    its directory; pytest's tmp dirs are private to root), yield its addresses.

    ``settings`` are scripts/daemons variables without the ``MXSCAN_CLAMD_``
    prefix, e.g. ``STREAM_MAX="1M"``, ``ALERT_EXCEEDS_MAX="no"``.
    """
    if not DAEMONS.is_file():
        _unavailable(f"{DAEMONS} is missing")
    if subprocess.run(["sh", "-c", "command -v clamd"], capture_output=True).returncode:
        _unavailable("clamd is not installed")
    reap_orphans(prefix)
    port = _free_port()
    run = Path(f"{prefix}{tag}-{os.getpid()}")
    env = {
        **os.environ,
        "MXSCAN_RUN_DIR": str(run),
        "MXSCAN_CLAMD_PORT": str(port),
        **{f"MXSCAN_CLAMD_{key}": value for key, value in settings.items()},
    }
    started = subprocess.run(
        ["bash", str(DAEMONS), "start", "clamd"], env=env, capture_output=True, text=True
    )
    try:
        if started.returncode:
            pytest.fail(f"cannot start a clamd of its own: {started.stdout}{started.stderr}")
        yield {"unix": f"unix:{run / 'clamd.sock'}", "inet": f"inet:127.0.0.1:{port}"}
    finally:
        _stop(run)
