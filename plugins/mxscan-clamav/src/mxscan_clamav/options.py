"""The ``[scanner.NAME]`` options of the clamav plugin, checked once at startup.

All validation happens here so that a typo in the configuration is one clear
``ConfigError`` naming the option when mxscan starts, never a surprise during a
scan at 3 a.m.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass

from mxscan import Action, Address, ConfigError
from mxscan import options as checks

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_REJECT_MESSAGE",
    "Heuristics",
    "OnInfected",
    "OnLimits",
    "OnOversize",
    "Options",
    "format_reject_message",
]

DEFAULT_ADDRESS = "unix:/run/clamav/clamd.ctl"
"""Debian's clamav-daemon socket (``LocalSocket`` in /etc/clamav/clamd.conf)."""

DEFAULT_REJECT_MESSAGE = "Virus found: %s"


class _Outcome(enum.Enum):
    """A choice whose first word is the action it takes (``accept-and-tag``:
    accept), so the three outcome options below cannot disagree about it."""

    @property
    def action(self) -> Action:
        return Action.parse(str(self.value).partition("-")[0])


class OnInfected(_Outcome):
    """What happens to a message clamd found a virus in."""

    DISCARD = "discard"
    REJECT = "reject"
    QUARANTINE = "quarantine"
    ACCEPT_AND_TAG = "accept-and-tag"


class OnOversize(_Outcome):
    """What happens to a message too large to scan (``max_size`` or clamd's
    ``StreamMaxLength``). There is no silent choice: each one is logged as
    ``skipped(oversize)`` with a reason."""

    ACCEPT_AND_LOG = "accept-and-log"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


class OnLimits(_Outcome):
    """What happens to a message clamd stopped scanning at one of its limits
    (``Heuristics.Limits.Exceeded.*``): not infected, and not clean either,
    since the rest of it was never looked at. Logged as ``unchecked(LIMIT)``."""

    TEMPFAIL = "tempfail"
    REJECT = "reject"
    QUARANTINE = "quarantine"
    ACCEPT_AND_TAG = "accept-and-tag"


class Heuristics(enum.Enum):
    """How clamd's ``Heuristics.*`` detections count when they are the only ones.

    ``infected``: like any signature (clamd's and clamav-milter's behaviour);
    ``tag``: accept, with ``X-Virus-Status: Infected (NAME)`` added;
    ``ignore``: the message counts as clean (the reason still names them).
    """

    INFECTED = "infected"
    TAG = "tag"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Options:
    addresses: tuple[Address, ...]
    timeout: float
    connect_timeout: float
    on_infected: OnInfected
    max_size: int | None
    on_oversize: OnOversize
    on_limits: OnLimits
    add_headers: bool
    reject_message: str
    heuristics: Heuristics
    hostname: str

    @classmethod
    def parse(
        cls,
        *,
        address: object = DEFAULT_ADDRESS,
        timeout: object = 60.0,
        connect_timeout: object = 5.0,
        on_infected: object = "discard",
        max_size: object = None,
        on_oversize: object = "accept-and-log",
        on_limits: object = "tempfail",
        add_headers: object = True,
        reject_message: object = DEFAULT_REJECT_MESSAGE,
        heuristics: object = "infected",
        hostname: object = None,
    ) -> Options:
        timeout_s = checks.duration("timeout", timeout)
        return cls(
            addresses=checks.addresses("address", address),
            timeout=timeout_s,
            connect_timeout=min(checks.duration("connect_timeout", connect_timeout), timeout_s),
            on_infected=checks.choice("on_infected", on_infected, OnInfected),
            max_size=None if max_size is None else checks.size("max_size", max_size),
            on_oversize=checks.choice("on_oversize", on_oversize, OnOversize),
            on_limits=checks.choice("on_limits", on_limits, OnLimits),
            add_headers=checks.flag("add_headers", add_headers),
            reject_message=_reject_message(reject_message),
            heuristics=checks.choice("heuristics", heuristics, Heuristics),
            hostname=_hostname(hostname),
        )


def format_reject_message(template: str, virus: str) -> str:
    """Put the virus name into ``reject_message``.

    ``%s`` (and clamav-milter's ``%v``, so an existing ``RejectMsg`` carries over)
    stand for the name, ``%%`` for a percent sign; a lone ``%`` stays as it is
    rather than failing at reject time.
    """
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char == "%" and i + 1 < len(template):
            following = template[i + 1]
            if following in "sv":
                out.append(virus)
                i += 2
                continue
            if following == "%":
                out.append("%")
                i += 2
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _reject_message(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"reject_message: expected a text such as {DEFAULT_REJECT_MESSAGE!r}")
    if not value.isprintable():
        raise ConfigError(
            f"reject_message: must be one printable line (an SMTP reply), got {value!r}"
        )
    return value


def _hostname(value: object) -> str:
    if value is None:
        return socket.gethostname() or "localhost"
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigError(f"hostname: expected a host name, got {value!r}")
    return value.strip()
