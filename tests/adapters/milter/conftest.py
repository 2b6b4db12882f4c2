"""Fixtures for the milter end-to-end tests (``mxscan milter`` as a process or a thread)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import run_dir
from tests.support.milter import install_slowplugin


@pytest.fixture(scope="session")
def slowplugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/mxscan-slowplugin pip-installed into a private directory (a real
    distribution with an entry point, found by the milter subprocess via PYTHONPATH)."""
    target = tmp_path_factory.mktemp("slowplugin-site")
    target.chmod(0o755)
    return install_slowplugin(target)


@pytest.fixture
def milter_sock() -> Iterator[Path]:
    """A socket path in a fresh directory under the test run directory that a
    Postfix smtpd (running as postfix) can reach."""
    parent = run_dir()
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(parent.stat().st_mode | 0o005)
    d = Path(tempfile.mkdtemp(prefix="milter-", dir=parent))
    d.chmod(0o755)  # smtpd runs as postfix: it must reach the socket
    yield d / "mxscan.sock"
    shutil.rmtree(d, ignore_errors=True)
