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
def testplugin(testplugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed test plugin on sys.path for this test (monkeypatch undoes
    it), so entry points find it as they find a pip-installed plugin."""
    monkeypatch.syspath_prepend(testplugin_path)  # also invalidates import caches
    try:
        yield testplugin_path
    finally:
        sys.modules.pop("mxscan_testplugin", None)
        importlib.invalidate_caches()
