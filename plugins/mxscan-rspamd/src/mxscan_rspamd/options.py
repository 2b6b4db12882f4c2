"""The ``[scanner.NAME]`` options of the rspamd plugin, declared once.

Each option has its check, its default as an admin writes it and one line of
meaning, which mxscan reads for checking, ``config show`` and the reference.
Every error names the option, so a typo is one clear ``ConfigError`` when mxscan
starts, never a surprise during a scan.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from mxscan import Action, ConfigError, options

__all__ = [
    "DEFAULT_ACTIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_CONTROLLER",
    "THRESHOLDS",
    "OnOversize",
    "RspamdOptions",
]

DEFAULT_ADDRESS = "inet:127.0.0.1:11333"
"""rspamd's normal worker as Debian's package binds it."""

DEFAULT_CONTROLLER = "inet:127.0.0.1:11334"
DEFAULT_REJECT_MESSAGE = "Message rejected as spam"

#: rspamd's actions and what they become by default. "reject" is REJECT (as
#: rspamd's own milter does; set ``actions.reject = "discard"`` to drop silently),
#: "soft reject" is a temporary failure (Postfix retries), the rest are accepted
#: with rspamd's headers. "greylist" is accepted too: rspamd returns it from the
#: score alone, and without its greylist module (Redis) remembering the first
#: try, a tempfail would recur on every retry until the mail bounced.
DEFAULT_ACTIONS: Mapping[str, Action] = {
    "reject": Action.REJECT,
    "soft reject": Action.TEMPFAIL,
    "greylist": Action.ACCEPT,
    "rewrite subject": Action.ACCEPT,
    "add header": Action.ACCEPT,
    "no action": Action.ACCEPT,
}

#: Option name -> rspamd action whose threshold it overrides for this request.
THRESHOLDS: Mapping[str, str] = {
    "reject_score": "reject",
    "soft_reject_score": "soft reject",
    "rewrite_subject_score": "rewrite subject",
    "add_header_score": "add header",
    "greylist_score": "greylist",
}


class OnOversize(enum.Enum):
    """What happens to a message over ``max_size``: never a silent pass, the
    verdict says ``skipped(oversize)`` and the log says why."""

    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


@options.check("a table of rspamd action = mxscan action", "table")
def _actions(option: str, value: object) -> dict[str, Action]:
    """The admin's table over the defaults: a partial table changes only what it names."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'{option}: expected a table such as {{ reject = "discard" }}, got {value!r}'
        )
    table = dict(DEFAULT_ACTIONS)
    for name, target in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{option}: {name!r} is not an rspamd action name")
        if not isinstance(target, str):
            raise ConfigError(f"{option}.{name}: expected an mxscan action, got {target!r}")
        try:
            table[" ".join(name.lower().replace("_", " ").split())] = Action.parse(target)
        except ValueError as error:
            raise ConfigError(f"{option}.{name}: {error}") from None
    return table


#: A text that may be left unset ("" in TOML, which has no null).
_maybe_line = options.optional(options.line, empty=True)
_maybe_score = options.optional(options.number)
_THRESHOLD_DOC = (
    "sent to rspamd as this request's threshold of its action `{}`, so one rspamd "
    "serves every policy's thresholds"
)


class RspamdOptions(options.Options):
    """The options of ``[scanner.NAME]`` with ``plugin = "rspamd"`` (docs/rspamd.md)."""

    address = options.Option(
        options.addresses,
        DEFAULT_ADDRESS,
        "rspamd's normal worker(s): `inet:host:port`, `inet:[::1]:port`, `unix:/path`, or a list",
    )
    controller = options.Option(
        options.addresses, DEFAULT_CONTROLLER, "rspamd's controller(s), for `learn()` only"
    )
    password = options.Option(
        _maybe_line, None, "the controller's password (`Password:` header), for `learn()`"
    )
    timeout = options.Option(options.duration, "60s", "the whole request, failover included")
    connect_timeout = options.Option(
        options.duration,
        "5s",
        "one connection attempt, so a dead address costs at most this before the next",
    )
    actions = options.Option(
        _actions,
        {name: str(action) for name, action in DEFAULT_ACTIONS.items()},
        "rspamd action -> mxscan action; a table changes only the actions it names",
    )
    reject_score = options.Option(_maybe_score, None, _THRESHOLD_DOC.format("reject"))
    soft_reject_score = options.Option(_maybe_score, None, _THRESHOLD_DOC.format("soft reject"))
    rewrite_subject_score = options.Option(
        _maybe_score, None, _THRESHOLD_DOC.format("rewrite subject")
    )
    add_header_score = options.Option(_maybe_score, None, _THRESHOLD_DOC.format("add header"))
    greylist_score = options.Option(_maybe_score, None, _THRESHOLD_DOC.format("greylist"))
    max_size = options.Option(
        options.size, "50MiB", "larger messages are not sent (rspamd's own `max_message`)"
    )
    on_oversize = options.Option(
        options.one_of(OnOversize),
        "accept",
        "what a message over `max_size` gets; `accept` is logged as `skipped(oversize)`",
    )
    remove_existing = options.Option(
        options.flag,
        True,
        "delete the sender's `X-Spam`, `X-Spam-*`, `X-Spamd-*` and `X-Rspamd-*` headers "
        "before scanning and in the result",
    )
    add_headers = options.Option(
        options.flag,
        True,
        "add the headers rspamd's `milter_headers` module asks for (`milter.add_headers`)",
    )
    rewrite_subject = options.Option(
        options.flag, True, "apply rspamd's new Subject on `rewrite subject`"
    )
    reject_message = options.Option(_maybe_line, None, "text of the 550 reply (unset: rspamd's)")
    settings_id = options.Option(
        _maybe_line, None, "rspamd's `Settings-ID`, selecting settings defined in rspamd"
    )

    @property
    def connect_deadline(self) -> float:
        """``connect_timeout``, never more than the whole request's ``timeout``."""
        return min(self.connect_timeout, self.timeout)

    @property
    def thresholds(self) -> dict[str, float]:
        """rspamd action -> the score this request sets for it."""
        found = {THRESHOLDS[name]: self[name] for name in THRESHOLDS}
        return {action: score for action, score in found.items() if score is not None}
