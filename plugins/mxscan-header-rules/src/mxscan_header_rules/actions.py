"""The right-hand side of a header_checks rule: ``COMMAND [text]``.

Parsed the way cleanup(8) and header_body_checks(3) split it (command up to
the first blank, case-insensitive; the rest after blanks is the text), so a
rule does here what it did in Postfix.
"""

from __future__ import annotations

import functools
import re

import attrs

from mxscan import ENHANCED_STATUS, SmtpReply

__all__ = [
    "KNOWN_COMMANDS",
    "ParsedAction",
    "parse_action",
    "parse_header_text",
    "reject_reply",
]

KNOWN_COMMANDS = frozenset(
    {
        "BCC",
        "DISCARD",
        "DUNNO",
        "FILTER",
        "HOLD",
        "IGNORE",
        "INFO",
        "OK",
        "PASS",
        "PREPEND",
        "REDIRECT",
        "REJECT",
        "REPLACE",
        "STRIP",
        "WARN",
    }
)

_DSN = re.compile(rf"({ENHANCED_STATUS.pattern})(?:\s+|$)")


@attrs.frozen
class ParsedAction:
    command: str  # upper case
    text: str  # the optional text, leading blanks removed


@functools.lru_cache(maxsize=4096)
def parse_action(value: bytes) -> ParsedAction:
    """(Cached: a table has few distinct actions, and one rule may hit every field.)"""
    text = value.decode("utf-8", "surrogateescape")
    cut = len(text)
    for i, ch in enumerate(text):
        if ch in " \t":
            cut = i
            break
    command = text[:cut]
    rest = text[cut:].lstrip(" \t\n\v\f\r")
    return ParsedAction(command.upper(), rest)


def reject_reply(text: str) -> SmtpReply:
    """REJECT's reply: Postfix prepends 5.7.1 unless the text starts with its
    own enhanced status; the default text is "message content rejected". A
    4.X.X status gives a 450 reply, 5.X.X a 550."""
    text = " ".join(text.split())  # never CR/LF in a reply
    status = "5.7.1"
    match = _DSN.match(text)
    if match and match.group(1)[0] in "45":
        status = match.group(1)
        text = text[match.end() :]
    if not text:
        text = "message content rejected"
    code = 450 if status.startswith("4") else 550
    return SmtpReply(code, status, text)


def parse_header_text(text: str) -> tuple[str, str] | None:
    """``Name: value`` from PREPEND/REPLACE text, or ``None`` when it is not a
    header (Postfix's is_header() test). The value keeps the bytes after the
    colon so that ``Name: value`` is written back exactly."""
    length = 0
    spaces = False
    for i, ch in enumerate(text):
        if ch == ":":
            if length == 0:
                return None
            return text[:i].rstrip(" \t"), text[i + 1 :]
        if ch in " \t":
            if length == 0:
                return None
            spaces = True
            continue
        if spaces or ord(ch) <= 32 or ord(ch) >= 127:
            return None
        length += 1
    return None
