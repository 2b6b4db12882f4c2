from __future__ import annotations

import pytest

from mxscan import parse_duration, parse_size
from mxscan.units import format_duration, format_size


@pytest.mark.parametrize(
    ("text", "size"),
    [(1024, 1024), ("500KiB", 512000), ("10MB", 10_000_000), ("2M", 2 * 1024**2),
     ("1GiB", 1024**3), ("1.5KiB", 1536), ("100", 100), (" 7 b ", 7)],
)  # fmt: skip
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "KiB", "5 parsecs", -1, True, 1.5, "0.3B", None])
def test_parse_size_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(60, 60.0), ("60s", 60.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (1.5, 1.5)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "5d", -1, False, None])
def test_parse_duration_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("size", [0, 1, 1000, 1024, 512000, 3 * 1024**3])
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("seconds", [0.25, 1.0, 60.0, 2.5])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
