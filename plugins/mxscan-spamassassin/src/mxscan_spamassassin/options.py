"""Checking the options an admin wrote in ``[scanner.NAME]``.

Every error names the option and what was expected, because the core shows it
to the admin as a configuration error, not as a traceback.
"""

from __future__ import annotations

import math

from mxscan import parse_duration, parse_size

from .oversize import OnOversize

__all__ = ["duration", "flag", "maybe_score", "maybe_text", "on_oversize", "size"]


def maybe_score(option: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"spamassassin: {option} must be a number (a score), got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"spamassassin: {option} must be a finite number, got {value!r}")
    return float(value)


def flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"spamassassin: {option} must be true or false, got {value!r}")
    return value


def maybe_text(option: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ValueError(f"spamassassin: {option} must be one line of text, got {value!r}")
    return value


def size(option: str, value: object) -> int:
    try:
        result = parse_size(value)
    except ValueError as error:
        raise ValueError(f"spamassassin: {option}: {error}") from None
    if result <= 0:
        raise ValueError(f"spamassassin: {option} must be more than 0 bytes, got {value!r}")
    return result


def duration(option: str, value: object) -> float:
    try:
        result = parse_duration(value)
    except ValueError as error:
        raise ValueError(f"spamassassin: {option}: {error}") from None
    if result <= 0:
        raise ValueError(f"spamassassin: {option} must be more than 0 seconds, got {value!r}")
    return result


def on_oversize(value: object) -> OnOversize:
    choices = ", ".join(repr(choice.value) for choice in OnOversize)
    if isinstance(value, OnOversize):
        return value
    if isinstance(value, str):
        try:
            return OnOversize(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"spamassassin: on_oversize must be one of {choices}, got {value!r}")
