"""Sizes and durations as mail admins write them (``500KiB``, ``60s``).

Configuration values come from humans who think in Postfix and amavisd terms, so
both plain numbers and suffixed strings are accepted; anything ambiguous is an
error rather than a guess.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}

_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}

_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"500KiB"``, ``"10MB"`` or ``"2M"`` (K/M/G are binary).

    Raises ValueError naming the accepted forms, because the caller turns it into
    a configuration error that the admin reads.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 500KiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _NUMBER_UNIT.fullmatch(value)
        if match:
            unit = match.group(2).lower()
            if unit in _SIZE_UNITS:
                number = float(match.group(1)) * _SIZE_UNITS[unit]
                if number == int(number):
                    return int(number)
    raise ValueError(
        f"expected a size such as 500KiB, 10MB, 2M or a number of bytes, got {value!r}"
    )


def parse_duration(value: object) -> float:
    """Seconds from ``60``, ``"60s"``, ``"500ms"``, ``"2m"`` or ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 60s, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        match = _NUMBER_UNIT.fullmatch(value)
        if match:
            unit = match.group(2).lower()
            if unit in _DURATION_UNITS:
                return float(match.group(1)) * _DURATION_UNITS[unit]
    raise ValueError(f"expected a duration such as 60s, 500ms, 2m or 1h, got {value!r}")


def format_size(size: int) -> str:
    """The shortest exact binary-suffixed form, so ``config show`` round-trips."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_duration(seconds: float) -> str:
    """A compact duration that ``parse_duration`` reads back exactly."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"
