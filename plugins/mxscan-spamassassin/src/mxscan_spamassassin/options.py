"""The ``[scanner.NAME]`` options of the spamassassin plugin, declared once.

Each option has its check, its default as an admin writes it and one line of
meaning; mxscan reads the declaration to refuse unknown keys, fill in ``config
show`` and write the configuration reference. Every error names the option,
because the core shows it to the admin as a configuration error, not as a
traceback.
"""

from __future__ import annotations

from mxscan import options

from .oversize import OnOversize

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_REJECT_MESSAGE", "SpamAssassinOptions"]

DEFAULT_ADDRESS = "inet:127.0.0.1:783"
DEFAULT_REJECT_MESSAGE = "Message rejected as spam"

#: A text that may be left unset ("" in TOML, which has no null).
_maybe_line = options.optional(options.line, empty=True)
_maybe_score = options.optional(options.number)


class SpamAssassinOptions(options.Options):
    """The options of ``[scanner.NAME]`` with ``plugin = "spamassassin"`` (docs/spamassassin.md)."""

    address = options.Option(
        options.addresses,
        DEFAULT_ADDRESS,
        "spamd, Postfix syntax: `inet:host:port`, `inet:[::1]:port`, `unix:/path`; or a list",
    )
    timeout = options.Option(
        options.duration, "60s", "the whole exchange with spamd, over all addresses"
    )
    user = options.Option(
        _maybe_line,
        None,
        "spamd's `User:` header, for per-user preferences (`spamd -c`/SQL prefs)",
    )
    compress = options.Option(
        options.flag,
        False,
        "zlib-compress the message on the way to spamd (spamd needs Compress::Zlib)",
    )
    tag_score = options.Option(
        _maybe_score, None, "add SpamAssassin's headers at or above this score"
    )
    spam_score = options.Option(
        _maybe_score,
        None,
        "spam at or above this score (unset: spamd's `required_score` decides)",
    )
    discard_score = options.Option(
        _maybe_score, None, "DISCARD at or above this score (ends the pipeline)"
    )
    reject_score = options.Option(
        _maybe_score, None, "REJECT at or above this score, with `550 5.7.1 <reject_message>`"
    )
    subject_tag = options.Option(
        _maybe_line,
        None,
        "like SpamAssassin's `rewrite_header Subject`: prefix the Subject of spam with this text",
    )
    remove_existing = options.Option(
        options.flag,
        True,
        "delete every `X-Spam-*` header already in the message (the sender's), before "
        "scanning and in the result",
    )
    max_size = options.Option(
        options.size,
        "500KiB",
        "larger messages get `on_oversize` (spamc's `-s` default)",
    )
    on_oversize = options.Option(
        options.one_of(OnOversize),
        "accept",
        "what a message over `max_size` gets; `accept` is logged as `skipped(oversize)`",
    )
    reject_message = options.Option(_maybe_line, DEFAULT_REJECT_MESSAGE, "text of the 550 reply")
