"""Fixtures for the header-rules tests: the shared corpus and Postfix's postmap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.daemons import corpus_dir, daemons_required


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_dir()


def _require(what: str) -> None:
    if daemons_required():
        pytest.fail(f"{what} is required (MXSCAN_REQUIRE_DAEMONS=1) but missing")
    pytest.skip(f"{what} not installed")


@pytest.fixture(scope="session")
def postmap(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(postmap binary, config dir with an empty main.cf)."""
    binary = shutil.which("postmap") or (
        "/usr/sbin/postmap" if Path("/usr/sbin/postmap").exists() else None
    )
    if binary is None:
        _require("Postfix postmap (Debian package postfix)")
    dynamicmaps = Path("/etc/postfix/dynamicmaps.cf")
    if not dynamicmaps.exists() or "pcre" not in dynamicmaps.read_text(errors="replace"):
        _require("Postfix pcre map support (Debian package postfix-pcre)")
    conf = tmp_path_factory.mktemp("postmap-conf")
    (conf / "main.cf").write_text("")
    return str(binary), conf
