"""Every key of the core's tables, declared once: its check, default and meaning.

The parser checks a table by parsing it with its class here, ``mxscan config
show`` writes each key back from the same declaration, and
scripts/gen_config_reference.py writes the reference page from it. A new key is
one ``Option`` line here (and the code that uses its value); nothing else
lists it. Plugin options are declared the same way, in each plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from ..body import DEFAULT_SPOOL_THRESHOLD
from ..conditions import parse_networks
from ..errors import ConfigError
from ..mimelimits import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NESTING,
    DEFAULT_MAX_PARTS,
    ON_UNCHECKED_ACTIONS,
    MimeLimits,
)
from ..options import (
    REQUIRED,
    Check,
    Option,
    Options,
    check,
    choices,
    duration,
    flag,
    optional,
    size,
    whole,
)
from ..pipeline import ON_ERROR_ACTIONS
from ..quarantine.settings import (
    KEEPABLE,
    ON_STORE_ERROR,
    QUARANTINE_ACTIONS,
    QuarantineSettings,
    format_age,
    parse_age,
)
from ..units import format_size, parse_size
from ..verdict import Action

__all__ = [
    "CONDITION_KEYS",
    "CORE_KEYS",
    "ON_ERROR",
    "TABLES",
    "TOP_KEYS",
    "DefaultsTable",
    "LogTable",
    "MimeTable",
    "QuarantineTable",
    "ScannerTable",
    "SpoolTable",
    "StageTable",
    "Table",
]


def _model_default(model: type, field: str) -> Any:
    """The default of an attrs model's field: the model and the file agree on it."""
    return getattr(attrs.fields(model), field).default


def _action_check(allowed: tuple[Action, ...], what: str = "") -> Check[Action]:
    names = ", ".join(str(a) for a in allowed)

    def parse(option: str, value: object) -> Action:
        if isinstance(value, Action) and value in allowed:
            return value
        if isinstance(value, str):
            try:
                action = Action.parse(value)
            except ValueError:
                action = None
            if action in allowed:
                return action
        raise ConfigError(f"{option}: expected one of {names}, got {value!r}")

    return Check(parse, ", ".join(f"`{a}`" for a in allowed), "string", str)


ON_ERROR = _action_check(ON_ERROR_ACTIONS)


@check("a size such as 500KiB, 10MB, 2M or a number of bytes", "string or integer", format_size)
def _size_or_zero(option: str, value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


@check("an existing directory")
def _directory(option: str, value: object) -> str:
    if not isinstance(value, str) or not Path(value).is_dir():
        raise ConfigError(f"{option}: {value!r} is not a directory")
    return value


@check("a whole number of at least 1", "integer")
def _limit(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option}: expected a whole number of at least 1, got {value!r}")
    return value


@check("CIDR blocks such as 192.0.2.0/24 or 2001:db8::/32", "array")
def _networks(option: str, value: object) -> list[str]:
    try:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of CIDR blocks, got {value!r}")
        parse_networks(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    return list(value)


@check(", ".join(f"`{k}`" for k in KEEPABLE), "array", sorted)
def _keep_copy(option: str, value: object) -> frozenset[str]:
    if not isinstance(value, list | tuple | frozenset) or not all(
        isinstance(v, str) for v in value
    ):
        raise ConfigError(f"{option}: expected a list of {', '.join(KEEPABLE)}")
    bad = [v for v in value if v not in KEEPABLE]
    if bad:
        raise ConfigError(f"{option}: {bad[0]!r} is not one of {', '.join(KEEPABLE)}")
    return frozenset(value)


@check("`sqlite:PATH` or `postgresql://...`")
def _store(option: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith(("sqlite:", "postgresql://", "postgres://"))
        or value in ("sqlite:", "sqlite://")
    ):
        raise ConfigError(f"{option}: expected sqlite:PATH or postgresql://..., got {value!r}")
    return value


@check("an age such as 30d, 2w, 12h or 90m", "string or number", format_age)
def _age(option: str, value: object) -> float:
    try:
        return parse_age(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


@check("`sendmail:PATH` or `smtp://HOST:PORT`")
def _release(option: str, value: object) -> str:
    if not isinstance(value, str) or not (
        (value.startswith("sendmail:") and len(value) > 9) or value.startswith("smtp://")
    ):
        raise ConfigError(f"{option}: expected sendmail:PATH or smtp://HOST:PORT, got {value!r}")
    return value


_PLUGIN_DOC = "the name of a scanner plugin, as `mxscan plugins` lists them (its entry point)"


@check("the name of an installed scanner plugin")
def _plugin(option: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{option}: required, {_PLUGIN_DOC}")
    return value


@check("a list of scanner names", "array")
def _run(option: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
        raise ConfigError(f"{option}: expected a list of scanner names")
    return tuple(value)


_FACILITIES = (
    "mail", "daemon", "user", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)  # fmt: skip


class DefaultsTable(Options):
    """defaults for every scanner"""

    on_error = Option(
        ON_ERROR,
        "tempfail",
        "what a scanner that gives no verdict (down, timeout, garbage, crash) turns into",
    )
    timeout = Option(duration, "60s", "time a scanner gets per message")


class LogTable(Options):
    """where the one line per message goes"""

    target = Option(
        choices("stderr", "syslog"), "stderr", "where log lines go (`syslog` is `/dev/log`)"
    )
    facility = Option(choices(*_FACILITIES), "mail", "syslog facility")
    level = Option(
        choices("debug", "info", "warning", "error"),
        "info",
        "lowest level logged; the per-message line is `info`",
    )


class SpoolTable(Options):
    """where large message bodies are kept while they are scanned"""

    threshold = Option(
        _size_or_zero,
        DEFAULT_SPOOL_THRESHOLD,
        "bodies above this size go to an unlinked temporary file",
    )
    directory = Option(
        optional(_directory),
        None,
        "where those files go (must exist)",
        path=True,
        default_doc="the system's temporary directory",
    )


class MimeTable(Options):
    """MIME structure limits mxscan checks itself, before any scanner
    ([what is scanned](../scanned.md))"""

    max_depth = Option(
        _limit, DEFAULT_MAX_DEPTH, "multipart nesting deeper than this is `unchecked(max_depth)`"
    )
    max_parts = Option(
        _limit,
        DEFAULT_MAX_PARTS,
        "more MIME parts than this in the whole message is `unchecked(max_parts)`",
    )
    max_nesting = Option(
        _limit,
        DEFAULT_MAX_NESTING,
        "message/rfc822 attachments nested deeper than this are `unchecked(max_nesting)`",
    )
    on_unchecked = Option(
        _action_check(ON_UNCHECKED_ACTIONS),
        _model_default(MimeLimits, "on_unchecked"),
        "what a message past a limit gets (scanners still run only for `accept`)",
    )


class ScannerTable(Options):
    """one `[scanner.NAME]` table per scanner instance"""

    plugin = Option(_plugin, REQUIRED, _PLUGIN_DOC)
    on_error = Option(
        optional(ON_ERROR),
        None,
        "overrides `[defaults] on_error` for this scanner",
        default_doc="`[defaults]`'s",
    )
    timeout = Option(
        optional(duration),
        None,
        "overrides `[defaults] timeout`; plugins with a `timeout` option get it too",
        default_doc="`[defaults]`'s",
    )
    max_concurrent = Option(
        optional(whole(1, "scans in flight at once")),
        None,
        "scans of this scanner in flight at once; more wait in mxscan, and the wait counts "
        "in `timeout` (`mxscan_scanner_wait_seconds`). Default: what the plugin declares "
        "(its daemon's default: spamassassin 5 = spamd `--max-children`, clamav 10 = clamd "
        "`MaxThreads`), else no bound. Set it to your daemon's setting; a policy cannot "
        "change it",
        default_doc="the plugin's",
    )
    mode = Option(
        choices("enforce", "shadow"),
        "enforce",
        "`shadow`: run, log and count the verdict, apply nothing it says",
    )
    skip_authenticated = Option(
        flag,
        False,
        "skip the scanner when the SMTP client authenticated (`skipped(authenticated)`)",
    )
    skip_networks = Option(
        _networks, (), "skip it for clients in these CIDR blocks (`skipped(network)`)"
    )
    keep_copy = Option(
        optional(_keep_copy),
        None,
        "overrides `[quarantine] keep_copy` when this scanner decided",
        default_doc="`[quarantine]`'s",
    )
    max_size = Option(
        optional(size),
        None,
        "skip it for messages above this size (`skipped(oversize)`); a plugin with its own "
        "`max_size` option gets the value instead",
        default_doc="none",
    )


class StageTable(Options):
    """`[[stage]]` tables: the order scanners run in"""

    run = Option(
        _run,
        REQUIRED,
        "scanner names that run concurrently in this stage; every scanner runs in "
        "exactly one stage (without any `[[stage]]`: one stage per scanner, in file order)",
    )


class QuarantineTable(Options):
    """keep copies of mail that is not delivered, with its verdicts
    ([Quarantine](../quarantine.md)); without this table nothing is kept"""

    store = Option(
        _store,
        _model_default(QuarantineSettings, "store"),
        "`sqlite:PATH` (built in) or `postgresql://...` (several MX hosts, needs "
        "`mxscan[postgresql]`)",
    )
    keep = Option(
        _age,
        _model_default(QuarantineSettings, "keep"),
        "`mxscan quarantine expire` deletes copies older than this (`30d`, `2w`, `12h`)",
    )
    max_size = Option(
        optional(_size_or_zero),
        None,
        "larger messages are not stored (a QUARANTINE is then held by Postfix)",
        default_doc="no limit",
    )
    keep_copy = Option(
        _keep_copy,
        _model_default(QuarantineSettings, "keep_copy"),
        "final actions that keep a copy",
    )
    quarantine_action = Option(
        choices(*QUARANTINE_ACTIONS),
        _model_default(QuarantineSettings, "quarantine_action"),
        "what QUARANTINE does: `store` keeps it here and answers discard; `hold` is "
        "Postfix's hold queue",
    )
    on_store_error = Option(
        choices(*ON_STORE_ERROR),
        _model_default(QuarantineSettings, "on_store_error"),
        "a copy that cannot be stored: `tempfail` (the client retries) or `proceed` "
        "(answer as if stored; the copy is lost)",
    )
    release = Option(
        _release,
        _model_default(QuarantineSettings, "release"),
        "where `release` re-injects: `sendmail:PATH` (`-G -i -f SENDER -- RCPT...`) or "
        "`smtp://HOST:PORT` (a next hop that does not scan again)",
    )


@attrs.frozen
class Table:
    """A top-level key of the file: a table of declared keys, or a table of them."""

    key: str
    #: The declared keys of the table (of each ``[scanner.NAME]``, each ``[[stage]]``).
    options: type[Options] | None
    doc: str = ""
    #: How the file writes it (``[scanner.NAME]``).
    title: str = ""

    @property
    def meaning(self) -> str:
        if self.doc:
            return self.doc
        assert self.options is not None and self.options.__doc__
        return " ".join(self.options.__doc__.split())


#: The file's top-level tables, in the order the reference and ``config show`` list them.
TABLES: tuple[Table, ...] = (
    Table("defaults", DefaultsTable, title="[defaults]"),
    Table("log", LogTable, title="[log]"),
    Table("spool", SpoolTable, title="[spool]"),
    Table("mime", MimeTable, title="[mime]"),
    Table("scanner", ScannerTable, title="[scanner.NAME]"),
    Table("stage", StageTable, title="[[stage]]"),
    Table(
        "policy",
        None,
        '`[policy."DOMAIN"]` tables: per recipient domain overrides',
        '[policy."DOMAIN"]',
    ),
    Table("quarantine", QuarantineTable, title="[quarantine]"),
)
TOP_KEYS = tuple(t.key for t in TABLES)

#: Keys of ``[scanner.NAME]`` that decide whether the scanner runs for a message.
CONDITION_KEYS = ("mode", "skip_authenticated", "skip_networks")
#: Keys of ``[scanner.NAME]`` the core takes; the rest go to the plugin.
#: ``max_size`` is not one: a plugin that declares it gets it (its own
#: oversize handling), and the core reads it only for the others.
CORE_KEYS = frozenset(ScannerTable.declared()) - {"max_size"}
