"""MIME structure limits that mxscan checks itself, before any scanner runs.

Virus scanners stop walking a message at some depth or part count, and a
clamd not told otherwise then answers ``OK``: EICAR at multipart depth 30 or
in part 12,000 was delivered as clean. A message past one of these limits is
``unchecked(LIMIT)`` with its own outcome (``on_unchecked``), never clean, and
that holds whatever the daemons behind mxscan are configured to do.

One pass over the body in chunks, holding only the open boundaries, the
Content-Type being read and at most one line prefix, so memory does not grow
with the message. Time is linear: in a part's body only lines that start with
``--`` are looked at (found with ``bytes.find``, at C speed), a boundary is one
dict lookup, and the walk stops at the first limit crossed - a hostile sender's
1,000-deep nesting costs the first ``max_depth`` levels.

Boundaries are matched as RFC 2046 and Python's email package do: ``--``, the
boundary, optionally ``--``, then optional white space; a delimiter of an outer
multipart closes the inner ones, and an inner multipart that reuses an outer
boundary gets no lines of its own (Postfix's test message mime_nest.in, one
boundary reused 23 times, is one multipart of 23 parts, as clamd reads it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from .header import header_name_length
from .message import Message
from .verdict import Action, SmtpReply, Verdict

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NESTING",
    "DEFAULT_MAX_PARTS",
    "LIMITS",
    "ON_UNCHECKED_ACTIONS",
    "Exceeded",
    "MimeLimits",
]

DEFAULT_MAX_DEPTH = 20
DEFAULT_MAX_PARTS = 5000
DEFAULT_MAX_NESTING = 10

#: The limits by the name that the log token and the configuration key share.
LIMITS = {
    "max_depth": "multipart nesting depth",
    "max_parts": "number of MIME parts",
    "max_nesting": "message/rfc822 nesting depth",
}

#: What ``on_unchecked`` may say. Not discard: the sender would never know.
ON_UNCHECKED_ACTIONS = (Action.ACCEPT, Action.QUARANTINE, Action.TEMPFAIL, Action.REJECT)

#: The scanner name of the verdict, in the log line (``mime=unchecked(max_parts)``).
SCANNER = "mime"

# A line kept for matching: a boundary is at most 70 characters (RFC 2046), so
# anything longer is matched on its prefix and the rest is skipped unread.
_LINE_CAP = 8192
# A Content-Type or Content-Transfer-Encoding field kept for parsing.
_FIELD_CAP = 8192

_TOKEN = rb'([^\s()<>@,;:\\"/\[\]?=]+)'
_MEDIA = re.compile(rb"[ \t\r\n]*" + _TOKEN + rb"[ \t\r\n]*/[ \t\r\n]*" + _TOKEN)
_BOUNDARY = re.compile(
    rb';[ \t\r\n]*boundary[ \t\r\n]*=[ \t\r\n]*(?:"((?:[^"\\\r\n]|\\.)*)"|([^\s;"]+))',
    re.IGNORECASE,
)
_ESCAPE = re.compile(rb"\\(.)")
_IDENTITY = (b"", b"7bit", b"8bit", b"binary")
_MESSAGE_TYPES = (b"message/rfc822", b"message/global")


@attrs.frozen
class Exceeded:
    """Which limit a message crossed (named as its ``[mime]`` key) and its value."""

    limit: str
    maximum: int

    @property
    def reason(self) -> str:
        return f"{LIMITS[self.limit]} over {self.maximum} (mime.{self.limit})"


def _check_count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, got {value!r}")


def _check_on_unchecked(_: object, __: object, value: Action) -> None:
    if value not in ON_UNCHECKED_ACTIONS:
        choices = ", ".join(str(a) for a in ON_UNCHECKED_ACTIONS)
        raise ValueError(f"on_unchecked must be one of {choices}, not {value}")


_REPLIES = {
    Action.REJECT: (554, "5.7.0", "Message structure too complex to scan"),
    Action.TEMPFAIL: (451, "4.7.0", "Message structure too complex to scan now"),
}


@attrs.frozen
class MimeLimits:
    """The ``[mime]`` table: the limits and what a message past one gets."""

    max_depth: int = attrs.field(default=DEFAULT_MAX_DEPTH, validator=_check_count)
    max_parts: int = attrs.field(default=DEFAULT_MAX_PARTS, validator=_check_count)
    max_nesting: int = attrs.field(default=DEFAULT_MAX_NESTING, validator=_check_count)
    on_unchecked: Action = attrs.field(default=Action.REJECT, validator=_check_on_unchecked)

    def check(self, message: Message) -> Exceeded | None:
        """The first limit the message crosses, or None when it stays under all."""
        return self.check_body(
            message.body.chunks(),
            content_type=_raw(message.get("Content-Type")),
            encoding=_raw(message.get("Content-Transfer-Encoding")),
        )

    def check_body(
        self,
        chunks: Iterable[bytes],
        *,
        content_type: bytes | None,
        encoding: bytes | None = None,
    ) -> Exceeded | None:
        """[`check`][mxscan.MimeLimits.check] on a body given in pieces of any size, under a header
        whose Content-Type and Content-Transfer-Encoding values are given.
        Reads no further than the chunk where a limit is crossed."""
        walker = _Walker(self)
        walker.start(content_type, encoding)
        return walker.run(chunks)

    def verdict(self, message: Message) -> Verdict | None:
        """``unchecked(LIMIT)`` with the ``on_unchecked`` action, or None."""
        exceeded = self.check(message)
        if exceeded is None:
            return None
        reply = None
        if self.on_unchecked in _REPLIES:
            code, status, text = _REPLIES[self.on_unchecked]
            detail = f"{LIMITS[exceeded.limit]} over {exceeded.maximum}"
            reply = SmtpReply(code, status, f"{text}: {detail}")
        return Verdict(
            action=self.on_unchecked,
            scanner=SCANNER,
            reason=f"{exceeded.reason}; not fully scanned (on_unchecked={self.on_unchecked})",
            unchecked=(exceeded.limit,),
            findings=(exceeded.limit,),
            reply=reply,
        )


def _raw(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8", "surrogateescape")


@attrs.define
class _Frame:
    multipart: bool
    boundary: bytes = b""
    #: False when an outer multipart already uses the boundary: its lines
    #: stay the outer one's (as Python's email and clamd read them), so a
    #: reused boundary cannot build depth that no scanner would see.
    owns: bool = False
    digest: bool = False


class _Walker:
    """The state machine: a body is a sequence of lines, each either in a
    header block (every line matters) or in a body (only ``--`` lines do)."""

    def __init__(self, limits: MimeLimits) -> None:
        self.limits = limits
        self.frames: list[_Frame] = []
        self.bounds: dict[bytes, int] = {}
        self.depth = 0
        self.nesting = 0
        self.parts = 0
        self.in_header = False
        self.default_type = b"text/plain"
        self.field = b""  # the name of the field being read in a header block
        self.ctype: bytearray | None = None
        self.encoding: bytearray | None = None
        self.carry = b""
        self.skip = False
        self.exceeded: Exceeded | None = None

    # -- driving -------------------------------------------------------------

    def start(self, ctype: bytes | None, encoding: bytes | None) -> None:
        self._entity(ctype, encoding)

    def run(self, chunks: Iterable[bytes]) -> Exceeded | None:
        for chunk in chunks:
            if self._feed(chunk):
                return self.exceeded  # read no further
        if self.exceeded is None and self.carry and not self.skip:
            self._line(self.carry)
        return self.exceeded

    def _feed(self, data: bytes) -> bool:
        """Take in one chunk; True once a limit is crossed."""
        self._lines(data)
        return self.exceeded is not None

    def _lines(self, data: bytes) -> None:
        buf = self.carry + data if self.carry else data
        self.carry = b""
        pos, end = 0, len(buf)
        while pos < end and self.exceeded is None:
            if self.skip:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    return
                pos, self.skip = newline + 1, False
                continue
            if not self.in_header and not buf.startswith(b"--", pos):
                if end - pos < 2:
                    if buf[pos:] == b"-":
                        self.carry = b"-"
                        return
                    if buf[pos:] != b"\n":
                        self.skip = True
                    return
                found = buf.find(b"\n--", pos)
                if found >= 0:
                    pos = found + 1
                    continue
                last = buf.rfind(b"\n", pos)
                if last < 0:
                    self.skip = True
                    return
                pos = last + 1
                continue
            newline = buf.find(b"\n", pos, pos + _LINE_CAP)
            if newline >= 0:
                self._line(buf[pos:newline])
                pos = newline + 1
            elif end - pos >= _LINE_CAP:
                self._line(buf[pos : pos + _LINE_CAP])
                pos += _LINE_CAP
                self.skip = True
            else:
                self.carry = buf[pos:]
                return

    # -- lines -----------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"--") and self._boundary(line):
            return
        if not self.in_header:
            return
        if not line:
            self._end_header()
        elif line[0] in b" \t":
            self._continue_field(line)
        else:
            length = header_name_length(line)
            if not length:
                # Not a header line: the header block ended without an empty
                # line (Postfix's rule) and this line is already body.
                self._end_header()
                if self.in_header:
                    self._line(line)
                return
            self.field = line[:length].lower()
            value = line[length:].lstrip(b" \t")[1:]  # after the colon
            if self.field == b"content-type" and self.ctype is None:
                self.ctype = bytearray(value[:_FIELD_CAP])
            elif self.field == b"content-transfer-encoding" and self.encoding is None:
                self.encoding = bytearray(value[:_FIELD_CAP])
            else:
                self.field = b""

    def _continue_field(self, line: bytes) -> None:
        target = self.ctype if self.field == b"content-type" else None
        if self.field == b"content-transfer-encoding":
            target = self.encoding
        if target is not None and len(target) < _FIELD_CAP:
            target += line[: _FIELD_CAP - len(target)]

    def _boundary(self, line: bytes) -> bool:
        """Handle a delimiter or close-delimiter line of an open multipart."""
        if not self.bounds:
            return False
        candidate = line[2:].rstrip(b" \t")
        index = self.bounds.get(candidate)
        if index is not None:
            self._pop_to(index + 1)
            self.parts += 1
            if self.parts > self.limits.max_parts:
                self.exceeded = Exceeded("max_parts", self.limits.max_parts)
                return True
            self.default_type = b"message/rfc822" if self.frames[index].digest else b"text/plain"
            self._begin_header()
            return True
        if candidate.endswith(b"--"):
            index = self.bounds.get(candidate[:-2])
            if index is not None:
                self._pop_to(index)
                self.in_header = False
                return True
        return False

    # -- entities ----------------------------------------------------------------

    def _begin_header(self) -> None:
        self.in_header = True
        self.field = b""
        self.ctype = None
        self.encoding = None

    def _end_header(self) -> None:
        ctype = None if self.ctype is None else bytes(self.ctype)
        encoding = None if self.encoding is None else bytes(self.encoding)
        self._entity(ctype, encoding)

    def _entity(self, ctype: bytes | None, encoding: bytes | None) -> None:
        """An entity's header is read: open what its Content-Type opens."""
        self.in_header = False
        media = self.default_type
        if ctype is not None:
            match = _MEDIA.match(ctype)
            if match:
                media = match[1].lower() + b"/" + match[2].lower()
        self.default_type = b"text/plain"
        if media.startswith(b"multipart/"):
            found = _BOUNDARY.search(ctype or b"")
            if found is None:
                return  # a multipart without a boundary is one opaque body
            quoted, token = found[1], found[2]
            boundary = (_ESCAPE.sub(rb"\1", quoted) if quoted is not None else token).rstrip()
            if not boundary:
                return
            owns = boundary not in self.bounds
            self.frames.append(_Frame(True, boundary, owns, media == b"multipart/digest"))
            if owns:
                self.bounds[boundary] = len(self.frames) - 1
            self.depth += 1
            if self.depth > self.limits.max_depth:
                self.exceeded = Exceeded("max_depth", self.limits.max_depth)
        elif media in _MESSAGE_TYPES and (encoding or b"").strip().lower() in _IDENTITY:
            self.frames.append(_Frame(False))
            self.nesting += 1
            if self.nesting > self.limits.max_nesting:
                self.exceeded = Exceeded("max_nesting", self.limits.max_nesting)
                return
            self._begin_header()

    def _pop_to(self, size: int) -> None:
        while len(self.frames) > size:
            frame = self.frames.pop()
            if not frame.multipart:
                self.nesting -= 1
                continue
            self.depth -= 1
            if frame.owns:
                del self.bounds[frame.boundary]
