"""One header field, kept as the exact bytes it arrived as.

A DKIM signature covers header bytes, so mxscan never rebuilds an unedited
header: ``raw`` is what goes out again. ``name`` and ``value`` are views for
scanners; decoding uses surrogateescape so 8-bit bytes never raise and encode
back to the same bytes.
"""

from __future__ import annotations

import re

import attrs

__all__ = [
    "MAX_LINE",
    "Header",
    "InvalidHeader",
    "fold_long_lines",
    "header_name_length",
    "validate_name",
    "validate_value",
]

#: RFC 5322's limit for one line of a header field, without its CRLF.
MAX_LINE = 998


#: A field name: printable ASCII but the colon (Postfix's is_header()).
_NAME_CHARS = rb"[\x21-\x39\x3b-\x7e]+"
_NAME = re.compile(_NAME_CHARS.decode())  # validate_name's rule, on str
_HEADER_START = re.compile(rb"(" + _NAME_CHARS + rb")[ \t]*:")
#: A whole field: a line that starts a header and the continuation lines
#: (leading space or tab) that fold it; and a run of them, a header block. The
#: in-memory parser uses both so that splitting a header costs two regex
#: passes instead of Python steps per line.
_FIELD = _NAME_CHARS + rb"[ \t]*:[^\n]*+\n?+(?:[ \t][^\n]*+\n?+)*+"
HEADER_FIELD = re.compile(_FIELD)
HEADER_BLOCK = re.compile(rb"(?:" + _FIELD + rb")*+")


class InvalidHeader(ValueError):
    """A header name or value that would corrupt the message or inject a header."""


def header_name_length(line: bytes) -> int:
    """Length of the field name if ``line`` starts a header, else 0.

    Same rule as Postfix's ``is_header()``: printable ASCII name, optional
    spaces or tabs, then a colon. Anything else is not a header, which is how
    Postfix decides where the header ends on malformed mail. Public so that a
    plugin reading header lines itself (header rules in MIME part headers)
    ends a header exactly where the core and Postfix do.
    """
    match = _HEADER_START.match(line)
    return match.end(1) if match else 0


def validate_name(name: str) -> None:
    if not name:
        raise InvalidHeader("a header name cannot be empty")
    if not _NAME.fullmatch(name):
        raise InvalidHeader(
            f"header name {name!r} may only hold printable ASCII without ':' or spaces"
        )


def validate_value(name: str, value: str) -> None:
    """A value may be folded (CRLF, then a space or tab, then more than
    whitespace: the line stays part of this field); any other CR or LF could
    start a header of the sender's choosing, or end the header, and is refused."""
    if "\r" in value or "\n" in value:
        for line in value.split("\r\n")[1:]:
            if line[:1] not in (" ", "\t") or not line.strip(" \t"):
                break
        else:
            if value.count("\r") == value.count("\n") == value.count("\r\n"):
                return _no_nul(name, value)
        raise InvalidHeader(
            f"refusing {name} value with CR or LF other than a fold (CRLF, then a space "
            f"or tab, then text): it would inject headers ({value[:60]!r})"
        )
    _no_nul(name, value)


def _no_nul(name: str, value: str) -> None:
    if "\0" in value:
        raise InvalidHeader(f"refusing {name} value with a NUL byte")


_TEXT = re.compile(rb"[^ \t]")


def _fold_line(line: bytes, budget: int, limit: int, continuation: bool) -> list[bytes]:
    """One line of a value cut into pieces of at most ``budget`` (first) and
    ``limit`` bytes: before a space or tab (a fold, which unfolding undoes), or
    - a word longer than a line - at the limit, with a space put in so that the
    rest is a continuation line. Indexes only, so a long line costs O(n)."""
    pieces: list[bytes] = []
    last_text = len(line.rstrip(b" \t"))
    start, pad = 0, b""
    while len(pad) + len(line) - start > budget:
        room = budget - len(pad)
        hi = min(start + room, last_text - 1)
        lo = start
        if continuation and not pad:  # the head must hold more than the fold's blank
            text = _TEXT.search(line, start)
            lo = text.start() if text else len(line)
        cut = max(line.rfind(b" ", lo + 1, hi + 1), line.rfind(b"\t", lo + 1, hi + 1))
        if cut <= start:
            cut = start + room
            while cut > start + 1 and 0x80 <= line[cut] < 0xC0:
                cut -= 1  # never split a UTF-8 sequence
            pieces.append(pad + line[start:cut])
            start, pad = cut, b" "
        else:
            pieces.append(pad + line[start:cut])
            start, pad = cut, b""
        budget, continuation = limit, True
    pieces.append(pad + line[start:])
    return pieces


def fold_long_lines(name: str, value: str, limit: int = MAX_LINE) -> str:
    """``value`` with a fold put into every line that ``Name: value`` would
    make longer than ``limit`` bytes; values that fit come back unchanged.

    Postfix breaks an over-long header line at byte 998 itself, wherever that
    falls (``Lots`` / ``of money``); a fold at whitespace changes nothing a
    reader sees once unfolded.
    """
    prefix = len(name) + (1 if value[:1] in (" ", "\t") else 2)
    if prefix + 4 * len(value) <= limit:  # fast path: even 4-byte UTF-8 fits
        return value
    data = _encode(value)
    out: list[bytes] = []
    for number, line in enumerate(data.split(b"\r\n")):
        budget = limit - prefix if number == 0 else limit
        out += _fold_line(line, budget, limit, continuation=number > 0)
    folded = b"\r\n".join(out)
    return value if folded == data else _decode(folded)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@attrs.frozen(eq=True, hash=True)
class Header:
    """A header field: ``raw`` is authoritative, the rest is derived from it."""

    raw: bytes

    @classmethod
    def build(cls, name: str, value: str, eol: bytes = b"\r\n") -> Header:
        """A new field as mxscan writes it: ``Name: value`` (or ``Name:`` + value
        when the value brings its own leading whitespace)."""
        validate_name(name)
        validate_value(name, value)
        return cls._checked(name, value, eol)

    @classmethod
    def _checked(cls, name: str, value: str, eol: bytes) -> Header:
        """``build`` for a name and value already validated (a HeaderEdit
        checks its own when it is made): checking again was most of the cost
        of applying an edit."""
        sep = b":" if value[:1] in (" ", "\t") else b": "
        data = _encode(value)
        if b"\r\n" in data and eol != b"\r\n":
            data = data.replace(b"\r\n", eol)  # a fold takes the message's line ending
        return cls._parsed(name.encode("ascii") + sep + data + eol)

    @classmethod
    def _parsed(cls, raw: bytes) -> Header:
        """A header the parser has already classified: skip re-checking it."""
        header = cls.__new__(cls)
        object.__setattr__(header, "raw", raw)
        return header

    @property
    def _colon(self) -> int:
        return self.raw.index(b":")

    @property
    def name(self) -> str:
        # Inlined (no _colon, no _decode): read for every field of every edited
        # message, 40,000 times for a 40,000-field one.
        raw = self.raw
        return raw[: raw.index(b":")].rstrip(b" \t").decode("utf-8", "surrogateescape")

    @property
    def raw_value(self) -> bytes:
        """Bytes after the colon without the final line ending (folding kept)."""
        rest = self.raw[self._colon + 1 :]
        if rest.endswith(b"\r\n"):
            return rest[:-2]
        if rest.endswith(b"\n"):
            return rest[:-1]
        return rest

    @property
    def value(self) -> str:
        """Unfolded value: line breaks before whitespace removed, leading
        whitespace dropped, bytes decoded without loss."""
        data = self.raw_value.replace(b"\r\n", b"").replace(b"\n", b"")
        return _decode(data.lstrip(b" \t"))

    @property
    def logical(self) -> str:
        """The header as Postfix's header_checks sees it: one key, folded lines
        joined with LF, the final line ending removed, and (as Postfix's MIME
        parser does) no whitespace between the name and the colon."""
        colon = self._colon
        data = self.raw[:colon].rstrip(b" \t") + self.raw[colon:]
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        return _decode(data.replace(b"\r\n", b"\n"))

    @property
    def eol(self) -> bytes:
        if self.raw.endswith(b"\r\n"):
            return b"\r\n"
        if self.raw.endswith(b"\n"):
            return b"\n"
        return b""

    def is_named(self, name: str) -> bool:
        return self.name.lower() == name.lower()

    def __attrs_post_init__(self) -> None:
        if header_name_length(self.raw) == 0:
            raise InvalidHeader(f"not a header field: {self.raw[:60]!r}")

    def __repr__(self) -> str:
        return f"Header({self.raw!r})"
