"""Fixtures for the milter end-to-end tests that run ``mxscan milter`` as a process."""

from __future__ import annotations

from pathlib import Path

import pytest
from milter_proc import install_slowplugin


@pytest.fixture(scope="session")
def slowplugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/mxscan-slowplugin pip-installed into a private directory (a real
    distribution with an entry point, found by the milter subprocess via PYTHONPATH)."""
    target = tmp_path_factory.mktemp("slowplugin-site")
    target.chmod(0o755)
    return install_slowplugin(target)
