"""The ``[quarantine]`` table: where copies go, how long they stay, which
outcomes keep one (globally and per scanner)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, assert_never

import attrs

from ..errors import ConfigError
from ..units import format_duration, parse_duration, parse_size
from ..verdict import Action

__all__ = ["DEFAULT_STORE", "KEEPABLE", "QuarantineSettings", "keepable", "parse_quarantine"]

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
KEYS = (
    "store", "keep", "max_size", "keep_copy", "quarantine_action", "on_store_error", "release",
)  # fmt: skip
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


def _keep_copy(source: str, where: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {where} keep_copy: expected a list of {', '.join(KEEPABLE)}")
    bad = [v for v in value if v not in KEEPABLE]
    if bad:
        raise ConfigError(
            f"{source}: {where} keep_copy: {bad[0]!r} is not one of {', '.join(KEEPABLE)}"
        )
    return frozenset(value)


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


def _choice(source: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"{source}: [quarantine] {key}: expected one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def parse_quarantine(
    source: str, table: Any, scanner_tables: Mapping[str, Any]
) -> QuarantineSettings | None:
    """None when there is no ``[quarantine]`` table: mxscan then keeps nothing
    and QUARANTINE means Postfix's hold queue, as before."""
    per_scanner = {
        name: _keep_copy(source, f"[scanner.{name}]", t["keep_copy"])
        for name, t in scanner_tables.items()
        if isinstance(t, Mapping) and "keep_copy" in t
    }
    if table is None:
        if per_scanner:
            name = next(iter(per_scanner))
            raise ConfigError(
                f"{source}: [scanner.{name}] keep_copy: needs a [quarantine] table to keep "
                "copies in"
            )
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [quarantine]: expected a table")
    for key in table:
        if key not in KEYS:
            raise ConfigError(
                f"{source}: [quarantine] {key}: unknown key (expected one of: {', '.join(KEYS)})"
            )
    store = table.get("store", DEFAULT_STORE)
    if (
        not isinstance(store, str)
        or not store.startswith(("sqlite:", "postgresql://", "postgres://"))
        or store in ("sqlite:", "sqlite://")
    ):
        raise ConfigError(
            f"{source}: [quarantine] store: expected sqlite:PATH or postgresql://..., got {store!r}"
        )
    try:
        keep = parse_age(table["keep"]) if "keep" in table else DEFAULT_KEEP
        max_size = parse_size(table["max_size"]) if "max_size" in table else None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: [quarantine] {exc}") from None
    keep_copy = (
        _keep_copy(source, "[quarantine]", table["keep_copy"])
        if "keep_copy" in table
        else frozenset(KEEPABLE)
    )
    release = table.get("release", "sendmail:/usr/sbin/sendmail")
    if not isinstance(release, str) or not (
        (release.startswith("sendmail:") and len(release) > 9) or release.startswith("smtp://")
    ):
        raise ConfigError(
            f"{source}: [quarantine] release: expected sendmail:PATH or smtp://HOST:PORT, "
            f"got {release!r}"
        )
    return QuarantineSettings(
        given=frozenset(table),
        release=release,
        store=store,
        keep=keep,
        max_size=max_size,
        keep_copy=keep_copy,
        per_scanner=per_scanner,
        quarantine_action=_choice(
            source, "quarantine_action", table.get("quarantine_action", "store"),
            QUARANTINE_ACTIONS,
        ),
        on_store_error=_choice(
            source, "on_store_error", table.get("on_store_error", "tempfail"), ON_STORE_ERROR
        ),
    )  # fmt: skip
