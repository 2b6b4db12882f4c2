"""Fixtures for the pipe adapter tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipe_helpers import PipeRunner


@pytest.fixture
def pipe(tmp_path: Path) -> PipeRunner:
    return PipeRunner(tmp_path)
