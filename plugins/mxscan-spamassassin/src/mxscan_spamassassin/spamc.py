"""The SPAMC/1.5 protocol, sans I/O: requests to bytes, bytes to responses.

What spamd 4.0 speaks (spamd(1p), ``Mail::SpamAssassin::Client``, and what a
real spamd answers, see ``tests/test_sa_spamc.py``)::

    HEADERS SPAMC/1.5\\r\\n            SPAMD/1.1 0 EX_OK\\r\\n
    Content-length: 1234\\r\\n         Content-length: 573\\r\\n
    User: bob\\r\\n                    Spam: True ; 1004.2 / 5.0\\r\\n
    \\r\\n                             \\r\\n
    <message>                        <the header SpamAssassin rewrote>

- PING has no headers and is answered by a status line alone
  (``SPAMD/1.5 0 PONG``); so are errors (``SPAMD/1.0 76 Bad header line: ...``),
  after which spamd closes the connection.
- CHECK's answer has no ``Content-length`` and no body; SYMBOLS' body is the
  comma-separated rule names; HEADERS' is the rewritten header; TELL's answer
  says what it did in ``DidSet:``/``DidRemove:``.
- ``Compress: zlib`` compresses the request body (spamd 4.0 answers
  uncompressed; a compressed answer is read too).

Only this module knows the wire format; ``client.py`` moves its bytes. Every
malformed answer is a :class:`ProtocolError`, a non-zero spamd code a
:class:`SpamdError`, so the plugin has one failure message per cause.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

import attrs

__all__ = [
    "COMMANDS",
    "MAX_BODY",
    "MAX_HEAD",
    "ProtocolError",
    "Request",
    "Response",
    "ResponseParser",
    "SpamResult",
    "SpamdError",
]

COMMANDS = ("CHECK", "SYMBOLS", "HEADERS", "REPORT", "REPORT_IFSPAM", "PROCESS", "TELL", "PING")
#: A status line plus protocol headers longer than this is not spamd.
MAX_HEAD = 64 * 1024
#: An answer body bigger than this is refused (HEADERS returns a message
#: header, SYMBOLS a rule list; PROCESS the message, which mxscan never asks for).
MAX_BODY = 64 * 1024 * 1024
#: Bytes a compressed answer may expand to (MAX_BODY): no zlib bomb.
_STATUS = re.compile(rb"SPAMD/(\d{1,3})\.(\d{1,3}) +(\d{1,3})(?: +([^\r\n]*))?")
_SPAM = re.compile(
    r"(true|false|yes|no) *; *(-?\d+(?:\.\d+)?) */ *(-?\d+(?:\.\d+)?)", re.IGNORECASE
)
_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9-]*")


class ProtocolError(ValueError):
    """The peer's bytes are not a SPAMD answer."""


class SpamdError(Exception):
    """spamd answered with a non-zero code (``EX_PROTOCOL``, ``EX_UNAVAILABLE``, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}".strip())
        self.code = code
        self.message = message


def _header_value(name: str, value: str) -> bytes:
    if not _NAME.fullmatch(name.encode("ascii", "replace")):
        raise ValueError(f"not a SPAMC header name: {name!r}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"SPAMC header {name} cannot hold CR, LF or NUL")
    return f"{name}: {value}\r\n".encode()


@attrs.frozen
class Request:
    """One SPAMC request. ``headers`` are extra protocol headers (TELL's
    ``Message-class``, ``Set``, ``Remove``); ``User`` and ``Compress`` have fields."""

    command: str
    body: bytes = b""
    user: str | None = None
    compress: bool = False
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"not a SPAMC command: {self.command!r}")

    def to_bytes(self) -> bytes:
        lines = [f"{self.command} SPAMC/1.5\r\n".encode("ascii")]
        if self.command == "PING":
            return lines[0] + b"\r\n"
        body = zlib.compress(self.body) if self.compress else self.body
        lines.append(b"Content-length: %d\r\n" % len(body))
        if self.user:
            lines.append(_header_value("User", self.user))
        if self.compress:
            lines.append(b"Compress: zlib\r\n")
        lines += [_header_value(name, value) for name, value in self.headers.items()]
        return b"".join(lines) + b"\r\n" + body


@attrs.frozen
class SpamResult:
    """spamd's ``Spam:`` header: its verdict, the score and required_score."""

    is_spam: bool
    score: float
    threshold: float

    @classmethod
    def parse(cls, value: str) -> SpamResult:
        match = _SPAM.fullmatch(value.strip())
        if match is None:
            raise ProtocolError(f"bad Spam header: {value[:80]!r}")
        flag, score, threshold = match.groups()
        return cls(flag.lower() in ("true", "yes"), float(score), float(threshold))


@attrs.frozen
class Response:
    """A complete answer with code 0. ``headers`` keys are lower-cased."""

    version: str
    message: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def spam(self) -> SpamResult | None:
        value = self.headers.get("spam")
        return None if value is None else SpamResult.parse(value)

    @property
    def symbols(self) -> tuple[str, ...]:
        """SYMBOLS' rule names."""
        text = self.body.decode("ascii", "replace").strip()
        return tuple(name for name in text.split(",") if name)


class ResponseParser:
    """Bytes from spamd in, one :class:`Response` out.

    ``feed()`` returns the response once it is complete (a ``Content-length``
    body fully read); ``eof()`` is called when spamd closed the connection and
    returns it, or raises when the answer stopped short. Memory is bounded by
    ``MAX_HEAD`` and ``max_body``.
    """

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buffer = bytearray()
        self._max_body = max_body
        self._status: tuple[str, int, str] | None = None
        self._headers: dict[str, str] | None = None
        self._length: int | None = None
        self._done: Response | None = None

    def feed(self, data: bytes) -> Response | None:
        if self._done is not None:
            if data:
                raise ProtocolError("data after the end of the answer")
            return self._done
        self._buffer += data
        if self._headers is None:
            self._parse_head()
            if self._headers is None:
                return None
        if self._length is not None and len(self._buffer) >= self._length:
            if len(self._buffer) > self._length:
                raise ProtocolError("data after the end of the answer")
            return self._finish()
        if len(self._buffer) > self._max_body:
            raise ProtocolError(f"answer body over {self._max_body} bytes")
        return None

    def eof(self) -> Response:
        """spamd closed the connection: the answer as it stands."""
        if self._done is not None:
            return self._done
        if self._status is None:
            if not self._buffer:
                raise ProtocolError("closed the connection without answering")
            raise ProtocolError(f"no SPAMD status line: {bytes(self._buffer[:80])!r}")
        if self._headers is None:
            # A status line alone (PING, an error) or headers without the blank line.
            rest = bytes(self._buffer)
            if rest.strip(b"\r\n"):
                self._headers = self._header_lines(rest.split(b"\n"))
                self._buffer.clear()
            else:
                self._headers = {}
                self._buffer.clear()
            self._check_code()
        if self._length is not None and len(self._buffer) != self._length:
            raise ProtocolError(
                f"answer body of {len(self._buffer)} bytes, Content-length said {self._length}"
            )
        return self._finish()

    # -- internals -----------------------------------------------------------

    def _parse_head(self) -> None:
        if self._status is None:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise ProtocolError("status line too long")
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            match = _STATUS.fullmatch(line)
            if match is None:
                raise ProtocolError(f"no SPAMD status line: {line[:80]!r}")
            major, minor, code, message = match.groups()
            self._status = (
                f"{int(major)}.{int(minor)}",
                int(code),
                (message or b"").decode("utf-8", "replace"),
            )
            del self._buffer[: end + 1]
        blank = _find_blank(self._buffer)
        if blank is None:
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError(f"protocol headers over {MAX_HEAD} bytes")
            return
        start, end = blank
        self._headers = self._header_lines(bytes(self._buffer[:start]).split(b"\n"))
        del self._buffer[:end]
        self._check_code()

    def _check_code(self) -> None:
        assert self._status is not None and self._headers is not None
        _version, code, message = self._status
        if code != 0:
            raise SpamdError(code, message)
        if "content-length" in self._headers:
            text = self._headers["content-length"].strip()
            if not text.isdigit():
                raise ProtocolError(f"bad Content-length: {text[:40]!r}")
            self._length = int(text)
            if self._length > self._max_body:
                raise ProtocolError(f"answer body of {self._length} bytes is over the limit")

    @staticmethod
    def _header_lines(lines: list[bytes]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _NAME.fullmatch(name):
                raise ProtocolError(f"bad protocol header line: {line[:80]!r}")
            headers[name.decode("ascii").lower()] = value.decode("utf-8", "replace").strip()
        return headers

    def _finish(self) -> Response:
        assert self._status is not None and self._headers is not None
        version, _code, message = self._status
        body = bytes(self._buffer)
        self._buffer.clear()
        if self._headers.get("compress", "").lower() == "zlib":
            body = _inflate(body, self._max_body)
        self._done = Response(version, message, self._headers, body)
        if "spam" in self._headers:
            _ = self._done.spam  # a bad Spam header is a protocol error now, not later
        return self._done


def _find_blank(buffer: bytearray) -> tuple[int, int] | None:
    """Where the header block ends: (end of headers, start of body)."""
    if buffer.startswith(b"\r\n"):
        return 0, 2
    if buffer.startswith(b"\n"):
        return 0, 1
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    found = [(i, i + 4) for i in (crlf,) if i >= 0] + [(i, i + 2) for i in (lf,) if i >= 0]
    return min(found) if found else None


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"bad zlib answer body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ProtocolError(f"compressed answer body expands past {limit} bytes")
    return out
