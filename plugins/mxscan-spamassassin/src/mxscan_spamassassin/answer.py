"""What spamd said, parsed without any I/O.

spamd's HEADERS answer carries the score in its ``Spam:`` protocol header and, in
its body, the message header as SpamAssassin rewrote it. We keep only the
``X-Spam-*`` fields from that body: they are SpamAssassin's own format (and any
``add_header`` the admin configured), which existing Sieve/procmail rules match.
Everything else in the body (a ``report_safe`` wrapper's Content-Type, SA's own
Received line) is ignored, because mxscan never rewrites the message body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KEEP_FOLDED", "SpamdAnswer", "parse_header_block", "refold", "rule_names", "unfold"]

_FOLD_AFTER_COMMA = re.compile(r",[ \t]*\r?\n[ \t]+")
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_TESTS = re.compile(r"(?:^|\s)tests=(\S*)")


def unfold(value: str) -> str:
    """Undo SpamAssassin's folding so the value fits in one HeaderEdit.

    SpamAssassin breaks ``tests=A,B,C`` after a comma with no space in the
    original, so a fold after a comma disappears entirely; any other fold was a
    space. Getting this wrong would turn ``tests=A,B`` into ``tests=A, B`` and
    break every rule that parses the list.
    """
    value = _FOLD_AFTER_COMMA.sub(",", value)
    value = _FOLD.sub(" ", value)
    return value.strip("\r\n").strip()


#: Fields written with SpamAssassin's own line breaks: the report is one rule
#: per line, and as one line it runs past RFC 5322's 998 bytes (where Postfix
#: breaks it mid-word). spamass-milter keeps these breaks too.
KEEP_FOLDED = frozenset({"x-spam-report"})


def refold(value: str) -> str:
    """SpamAssassin's folding kept, as CRLF + the continuation's own blank:
    what a HeaderEdit accepts as a fold. Blank lines inside are dropped (a
    whitespace-only line could end the header for some readers)."""
    lines = [line.rstrip(" \t") for line in value.splitlines()]
    head, rest = lines[0].strip(" \t"), [line for line in lines[1:] if line.strip(" \t")]
    if not rest:
        return head
    return "\r\n".join([head, *rest]) if head else "\r\n" + "\r\n".join(rest)


def parse_header_block(data: bytes) -> list[tuple[str, str]]:
    """Header fields (name, value) from spamd's answer body: unfolded, but for
    the ``KEEP_FOLDED`` ones, which keep SpamAssassin's line breaks.

    Lines that are neither a field nor a continuation are skipped rather than
    fatal: the score, which is what matters, came in the protocol header.
    """
    text = data.decode("utf-8", "surrogateescape")
    fields: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if line in ("\r\n", "\n"):
            break
        if line[:1] in (" ", "\t"):
            if fields:
                fields[-1][1] += line
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            continue
        fields.append([name, value])
    return [
        (name, refold(value) if name.lower() in KEEP_FOLDED else unfold(value))
        for name, value in fields
    ]


def rule_names(status: str) -> tuple[str, ...]:
    """Rule names from an unfolded X-Spam-Status value (``tests=none`` is none)."""
    match = _TESTS.search(status)
    if not match:
        return ()
    names = [name for name in match.group(1).split(",") if name and name != "none"]
    return tuple(names)


@dataclass(frozen=True)
class SpamdAnswer:
    """spamd's judgement: score, its required_score, and SA's X-Spam-* fields."""

    is_spam: bool
    score: float
    threshold: float
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def tests(self) -> tuple[str, ...]:
        for name, value in self.headers:
            if name.lower() == "x-spam-status":
                return rule_names(value)
        return ()

    @classmethod
    def from_parts(cls, is_spam: bool, score: float, threshold: float, body: bytes) -> SpamdAnswer:
        fields = parse_header_block(body)
        spam_fields = tuple((n, v) for n, v in fields if n.lower().startswith("x-spam-"))
        return cls(is_spam, float(score), float(threshold), spam_fields)
