"""Host tools the ops tests need (systemd-analyze, dpkg-deb, ...)."""

from __future__ import annotations

import shutil

import pytest

from tests.support.daemons import daemons_required


def require(tool: str) -> str:
    """The tool's path; a failure under MXSCAN_REQUIRE_DAEMONS=1 (CI), else a skip."""
    path = shutil.which(tool)
    if path is None:
        if daemons_required():
            pytest.fail(f"{tool} is not installed (scripts/install-system-deps installs it)")
        pytest.skip(f"{tool} is not installed")
    return path
