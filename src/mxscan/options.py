"""Checks for scanner plugin options, shared so every plugin words errors alike.

Each function takes the option's name and the value from the TOML file and
returns the checked value, or raises [`ConfigError`][mxscan.ConfigError] naming the option and
what was expected; the core adds the file and ``[scanner.NAME]`` in front.
Plugin authors use them as ``mxscan.options.size("max_size", value)``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import TypeVar

from .addresses import Address, parse_addresses
from .errors import ConfigError
from .units import parse_duration, parse_size

__all__ = ["addresses", "choice", "duration", "flag", "line", "number", "size"]

E = TypeVar("E", bound=enum.Enum)


def size(option: str, value: object) -> int:
    """A size above zero (``500KiB``, ``10MB``, a number of bytes)."""
    try:
        result = parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if result <= 0:
        raise ConfigError(f"{option}: must be more than 0 bytes, got {value!r}")
    return result


def duration(option: str, value: object) -> float:
    """A duration above zero (``60s``, ``500ms``, a number of seconds)."""
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if result <= 0:
        raise ConfigError(f"{option}: must be more than 0 seconds, got {value!r}")
    return result


def number(option: str, value: object) -> float:
    """A finite number (a score); booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: expected a finite number, got {value!r}")
    return float(value)


def flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{option}: expected true or false, got {value!r}")
    return value


def line(option: str, value: object) -> str:
    """One printable line of text: it may end up in a header or an SMTP reply,
    where CR or LF would inject content."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigError(f"{option}: expected one printable line of text, got {value!r}")
    return value


def choice(option: str, value: object, kind: type[E]) -> E:
    """A member of the enum ``kind``, written as its (case-insensitive) value."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        for member in kind:
            if str(member.value) == value.strip().lower():
                return member
    choices = ", ".join(str(member.value) for member in kind)
    raise ConfigError(f"{option}: expected one of {choices}, got {value!r}")


def addresses(option: str, value: object) -> tuple[Address, ...]:
    """One Postfix-style address or a list of them (failover order)."""
    if not isinstance(value, str) and not (
        isinstance(value, Sequence) and all(isinstance(item, str) for item in value)
    ):
        raise ConfigError(
            f"{option}: expected an address or a list of them (unix:/path, inet:host:port), "
            f"got {value!r}"
        )
    try:
        return parse_addresses(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
