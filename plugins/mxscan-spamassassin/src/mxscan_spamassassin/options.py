"""Checking the options an admin wrote in ``[scanner.NAME]``.

Every error names the option and what was expected, because the core shows it
to the admin as a configuration error, not as a traceback.
"""

from __future__ import annotations

from mxscan import options as checks

from .oversize import OnOversize

__all__ = ["duration", "flag", "maybe_score", "maybe_text", "on_oversize", "size"]


def maybe_score(option: str, value: object) -> float | None:
    return None if value is None else checks.number(option, value)


flag = checks.flag
size = checks.size
duration = checks.duration


def maybe_text(option: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    return checks.line(option, value)


def on_oversize(value: object) -> OnOversize:
    return checks.choice("on_oversize", value, OnOversize)
