"""Fixtures for core tests: a third-party plugin really installed from a distribution."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

DIST = Path(__file__).resolve().parents[1] / "data" / "mxscan-testplugin"


@pytest.fixture(scope="session")
def testplugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install tests/data/mxscan-testplugin with pip into a private directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(DIST)],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def testplugin(testplugin_path: Path) -> Iterator[Path]:
    """The installed test plugin on sys.path, so entry points find it."""
    sys.path.insert(0, str(testplugin_path))
    importlib.invalidate_caches()
    try:
        yield testplugin_path
    finally:
        sys.path.remove(str(testplugin_path))
        sys.modules.pop("mxscan_testplugin", None)
        importlib.invalidate_caches()
