"""The ``[scanner.NAME]`` options of the clamav plugin, checked once at startup.

Each option is declared once, with its check, its default as an admin writes
it and one line of meaning; mxscan reads the declaration for checking, ``config
show`` and the configuration reference. A typo in the configuration is one
clear ``ConfigError`` naming the option when mxscan starts, never a surprise
during a scan at 3 a.m.
"""

from __future__ import annotations

import enum
import socket

from mxscan import Action, ConfigError, options

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_REJECT_MESSAGE",
    "ClamAVOptions",
    "Heuristics",
    "OnInfected",
    "OnLimits",
    "OnOversize",
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


@options.check(f"one printable line, such as {DEFAULT_REJECT_MESSAGE!r}")
def _reject_message(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{option}: expected a text such as {DEFAULT_REJECT_MESSAGE!r}")
    if not value.isprintable():
        raise ConfigError(f"{option}: must be one printable line (an SMTP reply), got {value!r}")
    return value


@options.check("a host name (unset: this host's name)")
def _hostname(option: str, value: object) -> str:
    if value is None:
        return socket.gethostname() or "localhost"
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigError(f"{option}: expected a host name, got {value!r}")
    return value.strip()


class ClamAVOptions(options.Options):
    """The options of ``[scanner.NAME]`` with ``plugin = "clamav"`` (docs/clamav.md)."""

    address = options.Option(
        options.addresses,
        DEFAULT_ADDRESS,
        "clamd, Postfix syntax: `unix:/path`, `inet:host:port`, `inet:[::1]:port`; or a list",
    )
    timeout = options.Option(
        options.duration,
        "60s",
        "deadline for one scan: connecting (failover included), streaming, clamd's answer",
    )
    connect_timeout = options.Option(
        options.duration,
        "5s",
        "per connection attempt: what a dead address costs before failover (at most `timeout`)",
    )
    on_infected = options.Option(
        options.one_of(OnInfected),
        "discard",
        "what a message with a virus gets: `discard` (clamav-milter's `Blackhole`), "
        "`reject`, `quarantine` or `accept-and-tag`",
    )
    max_size = options.Option(
        options.optional(options.size),
        None,
        "messages larger than this are not sent to clamd at all: they get `on_oversize`",
        default_doc="unset",
    )
    on_oversize = options.Option(
        options.one_of(OnOversize),
        "accept-and-log",
        "for a message over `max_size` or over clamd's `StreamMaxLength`; "
        "always logged as `skipped(oversize)`",
    )
    on_limits = options.Option(
        options.one_of(OnLimits),
        "tempfail",
        "for a message clamd stopped scanning at one of its limits "
        "(`Heuristics.Limits.Exceeded.*`, needs `AlertExceedsMax yes`)",
    )
    add_headers = options.Option(
        options.flag,
        True,
        "`X-Virus-Scanned` and `X-Virus-Status`, clamav-milter's words, replacing every "
        "copy the sender wrote",
    )
    reject_message = options.Option(
        _reject_message, DEFAULT_REJECT_MESSAGE, "the 550 text; `%s` is the virus name"
    )
    heuristics = options.Option(
        options.one_of(Heuristics),
        "infected",
        "how clamd's `Heuristics.*` detections count when they are the only ones",
    )
    hostname = options.Option(
        _hostname,
        None,
        "the `at HOSTNAME` part of `X-Virus-Scanned` (clamav-milter's `ReportHostname`)",
        default_doc="this host's name",
    )

    @property
    def connect_deadline(self) -> float:
        """``connect_timeout``, never more than the whole scan's ``timeout``."""
        return min(self.connect_timeout, self.timeout)


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
