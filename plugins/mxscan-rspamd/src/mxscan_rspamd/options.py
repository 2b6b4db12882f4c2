"""The ``[scanner.NAME]`` options of the rspamd plugin, checked once at startup.

Every error names the option, so a typo is one clear ``ConfigError`` when mxscan
starts, never a surprise during a scan.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from mxscan import Action, Address, ConfigError
from mxscan import options as checks

__all__ = [
    "DEFAULT_ACTIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_CONTROLLER",
    "THRESHOLDS",
    "OnOversize",
    "Options",
]

DEFAULT_ADDRESS = "inet:127.0.0.1:11333"
"""rspamd's normal worker as Debian's package binds it."""

DEFAULT_CONTROLLER = "inet:127.0.0.1:11334"
DEFAULT_MAX_SIZE = "50MiB"  # rspamd's own max_message default
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


@dataclass(frozen=True)
class Options:
    addresses: tuple[Address, ...]
    controller: tuple[Address, ...]
    password: str | None
    timeout: float
    connect_timeout: float
    actions: Mapping[str, Action]
    thresholds: Mapping[str, float]
    max_size: int
    on_oversize: OnOversize
    remove_existing: bool
    add_headers: bool
    rewrite_subject: bool
    reject_message: str | None
    settings_id: str | None


def _actions(value: object) -> dict[str, Action]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'actions: expected a table such as {{ reject = "discard" }}, got {value!r}'
        )
    table = dict(DEFAULT_ACTIONS)
    for name, target in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"actions: {name!r} is not an rspamd action name")
        if not isinstance(target, str):
            raise ConfigError(f"actions.{name}: expected an mxscan action, got {target!r}")
        try:
            table[" ".join(name.lower().replace("_", " ").split())] = Action.parse(target)
        except ValueError as error:
            raise ConfigError(f"actions.{name}: {error}") from None
    return table


def _maybe_line(option: str, value: object) -> str | None:
    return None if value is None or value == "" else checks.line(option, value)


def parse(
    *,
    address: object,
    controller: object,
    password: object,
    timeout: object,
    connect_timeout: object,
    actions: object,
    thresholds: Mapping[str, object],
    max_size: object,
    on_oversize: object,
    remove_existing: object,
    add_headers: object,
    rewrite_subject: object,
    reject_message: object,
    settings_id: object,
) -> Options:
    timeout_s = checks.duration("timeout", timeout)
    scores = {
        THRESHOLDS[option]: checks.number(option, value)
        for option, value in thresholds.items()
        if value is not None
    }
    return Options(
        addresses=checks.addresses("address", address),
        controller=checks.addresses("controller", controller),
        password=_maybe_line("password", password),
        timeout=timeout_s,
        connect_timeout=min(checks.duration("connect_timeout", connect_timeout), timeout_s),
        actions=_actions(actions),
        thresholds=scores,
        max_size=checks.size("max_size", max_size),
        on_oversize=checks.choice("on_oversize", on_oversize, OnOversize),
        remove_existing=checks.flag("remove_existing", remove_existing),
        add_headers=checks.flag("add_headers", add_headers),
        rewrite_subject=checks.flag("rewrite_subject", rewrite_subject),
        reject_message=_maybe_line("reject_message", reject_message),
        settings_id=_maybe_line("settings_id", settings_id),
    )
