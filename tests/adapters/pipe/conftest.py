"""Fixtures for the pipe adapter tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pipe import PipeRunner


@pytest.fixture
def pipe(tmp_path: Path) -> PipeRunner:
    return PipeRunner(tmp_path)
