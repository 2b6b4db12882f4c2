"""The ``[quarantine]`` settings: where copies go, how long they stay, which
outcomes keep one (globally and per scanner). The keys of the table are
declared in ``mxscan.config.schema``, which parses them into this."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import assert_never

import attrs

from ..units import format_duration, parse_duration
from ..verdict import Action

__all__ = [
    "DEFAULT_STORE",
    "KEEPABLE",
    "ON_STORE_ERROR",
    "QUARANTINE_ACTIONS",
    "QuarantineSettings",
    "format_age",
    "keepable",
    "parse_age",
]

DEFAULT_STORE = "sqlite:/var/lib/mxscan/quarantine.db"
DEFAULT_KEEP = 30 * 86400.0


def keepable(action: Action) -> bool:
    """Whether a copy may be kept of mail given this final action: only of
    mail that is not delivered. A tempfail is not kept either: the client
    sends the message again (mypy names this function when Action gains a
    member, so the quarantine never keeps, or drops, one silently)."""
    match action:
        case Action.QUARANTINE | Action.DISCARD | Action.REJECT:
            return True
        case Action.ACCEPT | Action.TEMPFAIL:
            return False
        case _:
            assert_never(action)


#: The ``keep_copy`` words, in the order the docs give them: the actions
#: ``keepable`` says yes to (tests/quarantine/test_keepable.py holds the two equal).
KEEPABLE = ("discard", "reject", "quarantine")
#: ``quarantine_action``: ``store`` keeps the message here and tells the MTA
#: to discard it; ``hold`` is the old meaning (Postfix's hold queue).
QUARANTINE_ACTIONS = ("store", "hold")
#: ``on_store_error``: ``tempfail`` (the client retries: nothing lost) or
#: ``proceed`` (answer as if stored: the copy is lost, the admin said so).
ON_STORE_ERROR = ("tempfail", "proceed")


_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([dw])\s*")


def parse_age(value: object) -> float:
    """Seconds from a duration (``12h``, ``90m``) or days and weeks (``30d``, ``2w``):
    how long mail is kept is counted in days, a scan timeout never is."""
    if isinstance(value, str):
        match = _AGE.fullmatch(value)
        if match:
            return float(match.group(1)) * (86400.0 if match.group(2) == "d" else 604800.0)
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"expected an age such as 30d, 2w, 12h or 90m, got {value!r}") from None


def format_age(seconds: float) -> str:
    """The shortest form ``parse_age`` reads back exactly (``30d``, ``2w``, ``12h``)."""
    for unit, factor in (("w", 604800), ("d", 86400)):
        if seconds and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return format_duration(seconds)


@attrs.frozen
class QuarantineSettings:
    store: str = DEFAULT_STORE
    keep: float = DEFAULT_KEEP
    max_size: int | None = None
    keep_copy: frozenset[str] = frozenset(KEEPABLE)
    #: ``keep_copy`` of scanners that set their own: used when that scanner decided.
    per_scanner: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    quarantine_action: str = "store"
    on_store_error: str = "tempfail"
    #: Where ``release`` re-injects: ``sendmail:PATH`` or ``smtp://HOST:PORT``.
    release: str = "sendmail:/usr/sbin/sendmail"
    #: The keys the file set (``config show`` names the others' origin "default").
    given: frozenset[str] = frozenset()

    def keeps(self, action: Action, scanner: str) -> bool:
        """Whether a message this scanner gave this (final) action is kept."""
        if action is Action.QUARANTINE and self.quarantine_action == "store":
            return True  # storing it is what quarantine means
        return str(action) in self.per_scanner.get(scanner, self.keep_copy)
