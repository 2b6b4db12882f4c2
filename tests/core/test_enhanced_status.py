"""The RFC 3463 enhanced status (``class.subject.detail``) is one pattern,
``mxscan.ENHANCED_STATUS``, and every check of one uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mxscan import ENHANCED_STATUS, SmtpReply

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("status", ["2.0.0", "4.7.1", "5.7.1", "5.123.456", "4.0.10"])
def test_a_status_matches(status: str) -> None:
    assert ENHANCED_STATUS.fullmatch(status)


@pytest.mark.parametrize(
    "status", ["", "3.0.0", "5.7", "5.7.1.1", "5.1234.1", "5.7.1\n", " 5.7.1", "5.x.1", "55.7.1"]
)
def test_anything_else_does_not(status: str) -> None:
    assert not ENHANCED_STATUS.fullmatch(status)
    if status[:1] == "5":
        with pytest.raises(ValueError, match="enhanced status"):
            SmtpReply(550, status, "no")


def test_the_pattern_is_written_once() -> None:
    """No other module of the core, the adapters or a plugin spells it again."""
    spelled = re.compile(r"\\d\{1,3\}\\\.\\d\{1,3\}")
    sources = [
        *(REPO / "src").rglob("*.py"),
        *REPO.glob("plugins/*/src/**/*.py"),
        *REPO.glob("docs/examples/*/src/**/*.py"),
    ]
    assert len(sources) > 50
    found = [p.relative_to(REPO) for p in sources if spelled.search(p.read_text())]
    assert found == [Path("src/mxscan/verdict.py")]
